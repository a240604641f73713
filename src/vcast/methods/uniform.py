"""Uniform: equal per-frame budgets with V-CAST's dual-anchor spatial score.

Reference: a sanity baseline built from V-CAST (Lin et al., "V-CAST: Video Curvature-Aware
Spatio-Temporal Pruning for Efficient Video Large Language Models", arXiv 2603.27650): V-CAST's
spatial selection with its curvature-driven frame budgets replaced by an equal split, so that a
comparison against ``vcast`` isolates what the curvature budget adds.

What it does: K = ``total_budget(T, N, retain_ratio)`` is split equally over frames with V-CAST's
own largest-remainder allocation (:func:`vcast.core.budget.allocate_frames` on equal weights, one
token per frame at least, ties to the lower frame), and each frame keeps its top-k tokens by
:func:`vcast.core.select.dual_anchor_scores` (``1 - cos(token, frame mean) + minmax(||token||)``).
Pure pruning: kept tokens keep their original positions.

Faithfulness: identical to :func:`vcast.select_tokens` except for the frame budgets, which is the
point of the baseline. Vectorised over frames; no host sync beyond the finiteness check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from vcast.config import MethodConfig
from vcast.core.curvature import EPS
from vcast.core.select import dual_anchor_scores
from vcast.core.selection import Selection
from vcast.methods._common import (
    equal_budget,
    float_frames,
    kept_total,
    make_selection,
    mask_to_index,
    one_video,
    topk_mask,
)
from vcast.methods.registry import MethodSpec, register_method


@dataclass(frozen=True)
class UniformConfig(MethodConfig):
    """Uniform has no options beyond :class:`~vcast.config.MethodConfig`."""

    method: ClassVar[str] = "uniform"


def select_uniform(features: torch.Tensor, config: UniformConfig) -> Selection:
    """Equal per-frame budgets, dual-anchor top-k within each frame.

    Args:
        features: ``Tensor[T, N, D]``.
        config: a :class:`UniformConfig`.

    Returns:
        A :class:`Selection` with zeros as the frame score (there is none).
    """
    x = one_video(features)
    xf, means = float_frames(x)
    t, n, _ = x.shape
    k = kept_total(t, n, config.retain_ratio)
    budget = equal_budget(x, k)
    scores = dual_anchor_scores(xf, F.normalize(means, dim=-1, eps=EPS))
    return make_selection(mask_to_index(topk_mask(scores, budget), k), budget, t, n)


register_method(MethodSpec(
    name="uniform",
    config_cls=UniformConfig,
    select=select_uniform,
    summary="Uniform: equal per-frame budget + V-CAST's dual-anchor token score",
    keeps_every_frame=lambda cfg: True,
    every_frame_note="yes: K split equally over frames, at least one each",
))
