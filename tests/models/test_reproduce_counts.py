"""Model adapters with a method whose kept count is not round(T*N*r): the ``reproduce=`` modes keep
what the reproduced code keeps, and the prefill shrinks by exactly the tokens dropped."""

from __future__ import annotations

import pytest
from tiny_cache import tiny

import vcast
import vcast.testing as vt
from vcast.core.budget import total_budget

# (method, options, ratio, frames): each keeps a count other than round(T*N*r) on the tiny models.
SETTINGS = [
    ("evs", {"reproduce": "vllm"}, 0.05, 12),  # vLLM keeps the whole first frame
    ("dycoke", {"reproduce": "authors"}, 0.475, 12),  # the official per-frame rate, last window whole
    ("vidcom2", {"reproduce": "authors"}, 0.15, 12),  # the official per-frame round(scale * N)
    ("fastvid", {"reproduce": "authors"}, 0.27, 16),  # the official caps, no spill-over
]


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl", "llava_onevision"])
@pytest.mark.parametrize(("method", "options", "ratio", "frames"), SETTINGS)
def test_prefill_shrinks_by_exactly_the_dropped_count(family, method, options, ratio, frames) -> None:
    model, processor = tiny(family)
    inputs = vt.make_inputs(processor, "What happens?", videos=[vt.random_video(frames, seed=3)])
    with vcast.enabled(model, method=method, retain_ratio=ratio, **options) as handle:
        out = model(**inputs)
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    stats, (sel,) = handle.stats, handle.selections
    t, n = sel.num_frames, sel.tokens_per_frame
    assert sel.num_kept != total_budget(t, n, ratio)  # the count the equal-terms contract would give
    dropped = stats["video_tokens_before"] - stats["video_tokens_after"]
    assert stats["video_tokens_after"] == sel.num_kept == int(sel.frame_budget.sum())
    assert stats["prefill_length_after"] == stats["prefill_length_before"] - dropped
    assert out.logits.shape[1] == stats["prefill_length_after"]
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3


def test_two_rows_with_different_reproduced_counts() -> None:
    model, processor = tiny("qwen3_vl")
    inputs = vt.make_inputs(processor, ["What happens?", "Describe it."],
                            videos=[vt.random_video(12, seed=1), vt.random_video(10, seed=2)])
    with vcast.enabled(model, method="evs", retain_ratio=0.05, reproduce="vllm") as handle:
        model(**inputs)
    kept = [v["tokens_kept"] for v in handle.stats["videos"]]
    assert kept == [v["tokens_per_frame"] for v in handle.stats["videos"]]  # the first frame, whole
    rows_dropped = [b - a for b, a in zip(handle.stats["prompt_tokens_before"], handle.stats["prompt_tokens_after"])]
    assert rows_dropped == [v["tokens_before"] - v["tokens_kept"] for v in handle.stats["videos"]]
