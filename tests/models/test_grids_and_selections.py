"""Adapters hand each video's frame grid to grid methods and expose the last selections."""

from __future__ import annotations

import pytest
import torch
from tiny_cache import tiny

import vcast
import vcast.testing as vt


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen2_vl", "llava_onevision"])
def test_pool_runs_on_the_real_grid_and_selections_match_stats(model_type: str) -> None:
    model, processor = tiny(model_type)
    video = vt.random_video(4, 64, 96, seed=3)  # a non-square token grid on Qwen
    inputs = vt.make_inputs(processor, "What moves?", videos=[video])
    with vcast.enabled(model, method="pool", retain_ratio=0.25) as handle, torch.no_grad():
        model(**inputs)
        sels = handle.selections
        stats = handle.stats
    assert len(sels) == 1 and sels[0].merged_features is not None
    assert sels[0].num_kept == stats["videos"][0]["tokens_kept"]
    assert sels[0].frame_budget.tolist() == stats["videos"][0]["kept_per_frame"]


def test_selections_empty_before_the_first_prefill() -> None:
    model, _ = tiny("qwen3_vl")
    with vcast.enabled(model, retain_ratio=0.5) as handle:
        assert handle.selections == [] and handle.stats == {}
