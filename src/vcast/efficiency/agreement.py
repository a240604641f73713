"""How much early selection (``prune_at="vision:k"``) agrees with post-encoder selection.

Both selections run the same method on the same clip through the same model: the post-encoder one
on the merger outputs (what the LLM would see), the early one on the merge-group means of the hidden
states after vision block k. Reported per clip and ratio:

* ``jaccard``: ``|A & B| / |A | B|`` of the two kept-token sets;
* ``frame_budget_overlap``: ``sum_t min(a_t, b_t) / K``, how much of the per-frame budget split agrees;
* ``random_jaccard``: the expected Jaccard of two independent uniform draws of K of the T*N tokens,
  ``r / (2 - r)``, as the chance level.

The coverage clips (:mod:`vcast.bench.clips`) go through a tiny random-weight Qwen3-VL, so the
numbers say how much selection moves when it is made k blocks in rather than at the end of *this*
tower; with trained weights the features (and the agreement) differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vcast.efficiency.analytic import default_vision_block
from vcast.efficiency.model_specs import spec_from_hf_config


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """Jaccard index of two index sets (``LongTensor[K_a]``, ``LongTensor[K_b]``)."""
    sa, sb = set(a.tolist()), set(b.tolist())
    return len(sa & sb) / max(1, len(sa | sb))


def early_agreement(
    ratios: Sequence[float] = (0.5, 0.25, 0.1),
    kinds: Sequence[str] | None = None,
    *,
    frames: int = 16,
    size: int = 224,
    seeds: Sequence[int] = (0, 1),
    method: str = "vcast",
    vision_depth: int = 8,
    block: int | None = None,
) -> list[dict]:
    """Jaccard agreement of early vs post-encoder kept sets on the coverage clips.

    Args:
        ratios: retain ratios.
        kinds: clip kinds (default: all of :data:`vcast.bench.clips.CLIP_KINDS`).
        frames, size: clip shape (tiny model: patch 8, so 224 px gives 14x14 tokens per frame pair).
        seeds: clip seeds per kind.
        method: a registered non-merging method.
        vision_depth: depth of the tiny vision tower.
        block: k (default :func:`~vcast.efficiency.default_vision_block` of the tower).

    Returns:
        One row per (clip, seed, ratio) with ``jaccard``, ``frame_budget_overlap``, ``random_jaccard``.
    """
    from vcast.bench.clips import CLIP_KINDS, make_clip
    from vcast.methods import make_config
    from vcast.models.qwen3_vl_early import encode_video_early, method_selector
    from vcast.testing import make_inputs, tiny_model

    model, processor = tiny_model("qwen3_vl", vision_depth=vision_depth, vision_hidden=64)
    k = default_vision_block(spec_from_hf_config(model.config)) if block is None else block
    merge = model.config.vision_config.spatial_merge_size
    rows = []
    for kind in kinds or CLIP_KINDS:
        for seed in seeds:
            clip = make_clip(kind, frames=frames, size=(size, size), seed=seed)
            inputs = make_inputs(processor, "Describe the video.", videos=[clip.frames])
            pixels, grid = inputs["pixel_values_videos"], inputs["video_grid_thw"]
            t, h, w = (int(x) for x in grid[0])
            with torch.no_grad():
                final = model.model.get_video_features(pixels, grid, return_dict=True).pooler_output[0]
            features = final.reshape(t, (h // merge) * (w // merge), -1)
            for ratio in ratios:
                cfg = make_config(method, retain_ratio=ratio, prune_at=f"vision:{k}")
                post = method_selector(cfg)([features], [(h // merge, w // merge)])[0]
                early = encode_video_early(
                    model.model.visual, pixels, grid, k, method_selector(cfg)
                ).selections[0]
                overlap = torch.minimum(post.frame_budget, early.frame_budget).sum().item()
                rows.append(
                    {
                        "clip": kind,
                        "seed": seed,
                        "ratio": ratio,
                        "method": method,
                        "prune_at": f"vision:{k}",
                        "vision_depth": vision_depth,
                        "jaccard": jaccard(post.keep_index, early.keep_index),
                        "frame_budget_overlap": overlap / max(1, post.num_kept),
                        "random_jaccard": ratio / (2 - ratio),
                    }
                )
    return rows


def summarise_agreement(rows: Sequence[dict]) -> list[dict]:
    """Mean Jaccard / budget overlap per ratio over the clips."""
    out = []
    for ratio in sorted({r["ratio"] for r in rows}, reverse=True):
        sel = [r for r in rows if r["ratio"] == ratio]
        out.append(
            {
                "ratio": ratio,
                "clips": len(sel),
                "jaccard": sum(r["jaccard"] for r in sel) / len(sel),
                "frame_budget_overlap": sum(r["frame_budget_overlap"] for r in sel) / len(sel),
                "random_jaccard": sel[0]["random_jaccard"],
            }
        )
    return out
