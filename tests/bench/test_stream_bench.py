"""vcast.bench.stream: matched token counts and the latency measurement (short settings)."""

from __future__ import annotations

import pytest
import torch

from vcast.bench import stream as bench
from vcast.bench.coverage import build_suite


@pytest.mark.parametrize("curvature", ["angle", "robust"])
def test_matched_masks_keep_the_same_number_of_tokens(curvature) -> None:
    for s in build_suite(seeds=1, frames=12, size=(112, 112), grid=(7, 7)):
        masks = bench.matched_masks(s.features, 0.2, curvature, chunk=1)
        assert len({int(m.sum()) for m in masks.values()}) == 1


def test_latency_rows_report_ratios() -> None:
    from vcast.proxy.model import build_processor, load_model

    torch.set_num_threads(1)
    with torch.no_grad():
        rows = bench.latency_rows(load_model(), build_processor(), checkpoints=(8, 16), repeats=1, size=64)
    assert [r["frames"] for r in rows] == [8, 16]
    for r in rows:
        assert r["add_frames_s"] > 0 and r["full_over_stream"] == pytest.approx(r["offline_full_s"] / r["add_frames_s"])
