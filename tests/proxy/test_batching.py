"""Training batches: the fast encoder equals the real processor bit for bit; per-token targets; thinning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcast.proxy import tasks
from vcast.proxy.batching import (
    EVIDENCE,
    FIRST,
    QUADRANT,
    WHAT,
    FastEncoder,
    pixel_rows,
    pruned_to,
    thin_selections,
    token_targets,
)
from vcast.proxy.model import build_model, build_processor, encode


@pytest.fixture(scope="module")
def processor():
    return build_processor()


@pytest.mark.parametrize("split", ["train", "val"])
def test_fast_encoder_equals_the_processor(processor, split) -> None:
    clips = tasks.make_split(split, 4, 16)
    encoder = FastEncoder(processor)
    for group in ([c for c in clips if len(c.frames) == tasks.NUM_FRAMES], [c for c in clips if c.family == "late"],
                  clips[:5]):  # 16-frame prompts of several lengths, 64-frame ones, and both padded together
        ref, fast = encode(processor, group), encoder(group)
        assert set(ref) == set(fast)
        for key in ref:
            assert fast[key].dtype == ref[key].dtype and torch.equal(fast[key], ref[key]), key
    assert len(encoder._rows) <= len({(c.question, c.frames.shape) for c in clips})  # text encoded once per key


def test_pixel_rows_are_the_processor_patches(processor) -> None:
    clip = tasks.make_clip("test", 0, 2)
    rows = pixel_rows(clip.frames)
    assert rows.shape == (len(clip.frames) // 2 * 8 * 8, 3 * 2 * 16 * 16)
    assert torch.equal(rows, encode(processor, [clip])["pixel_values_videos"])


def test_token_targets_follow_the_labels_and_mark_the_evidence() -> None:
    clips = [tasks.make_clip("val", 0, i, family=f) for i, f in enumerate(("needle", "cuts", "order", "where"))]
    targets = token_targets(clips)
    per_clip = [len(c.frames) // 2 * 16 for c in clips]
    assert targets.shape == (sum(per_clip), 6)
    for clip, t in zip(clips, targets.split(per_clip)):
        assert torch.equal(t[:, :4], torch.from_numpy(clip.labels.reshape(-1, 4)).long())
        quadrant = t[:, QUADRANT].reshape(-1, 4, 4)[0]
        assert quadrant.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
        evidence = t[:, EVIDENCE].bool()
        if clip.family == "cuts":
            assert not evidence.any()
        elif clip.family == "order":
            assert evidence.any() and torch.equal(evidence, t[:, FIRST] == 1)
        else:
            assert evidence.any() and torch.equal(evidence, t[:, WHAT] > 0)


def test_thin_selections_keep_objects_first_and_the_asked_share() -> None:
    rng = np.random.default_rng(3)
    what = np.zeros((3, 8, 16), dtype=np.uint8)
    what[0, 2, [1, 5, 6]] = 2
    what[1, 7, 0] = 5
    ratios = np.array([1 / 16, 0.5, 1.0])
    selections = thin_selections(rng, what, ratios)
    for sel, w, r in zip(selections, what, ratios):
        kept = sel.keep_mask().numpy()
        budget = max(1, round(16 * r))
        assert (kept.sum(1) == budget).all()
        assert ((kept & (w > 0)).sum(1) == np.minimum((w > 0).sum(1), budget)).all()  # objects kept first
    assert selections[2].keep_mask().all()


def test_thin_selections_can_put_objects_last_or_ignore_them() -> None:
    what = np.zeros((2, 8, 16), dtype=np.uint8)
    what[:, :, :4] = 3  # four object tokens in every temporal patch
    ratios = np.full(2, 4 / 16)
    never = thin_selections(np.random.default_rng(0), what, ratios, objects=-1)
    assert all(not (s.keep_mask().numpy() & (w > 0)).any() and s.num_kept == 32 for s, w in zip(never, what))
    # objects=0 is the objects=1 draw without the preference: the same random ranks, other tokens kept
    plain = thin_selections(np.random.default_rng(0), what, ratios, objects=0)
    first = thin_selections(np.random.default_rng(0), what, ratios, objects=1)
    assert all(s.keep_mask()[:, :4].all() for s in first)
    assert any(not torch.equal(a.keep_index, b.keep_index) for a, b in zip(plain, first))
    with pytest.raises(ValueError):
        thin_selections(np.random.default_rng(0), what, ratios, objects=2)


def test_pruned_to_keeps_exactly_the_given_tokens_and_is_removed_after(processor) -> None:
    clips = tasks.make_split("val", 0, 2, families=("needle",))
    what = token_targets(clips)[:, WHAT].reshape(2, 8, 16).numpy()
    chosen = thin_selections(np.random.default_rng(1), what, np.array([2 / 16, 5 / 16]))
    model = build_model(seed=0).eval()
    inputs = encode(processor, clips)
    with torch.no_grad():
        plain = model(**inputs, logits_to_keep=1).logits
        with pruned_to(model, chosen) as handle:
            model(**inputs, logits_to_keep=1)
        assert [v["kept_per_frame"] for v in handle.stats["videos"]] == [s.frame_budget.tolist() for s in chosen]
        assert [s.keep_index.tolist() for s in handle.selections] == [s.keep_index.tolist() for s in chosen]
        assert torch.equal(model(**inputs, logits_to_keep=1).logits, plain)  # nothing installed after the block
