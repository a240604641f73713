"""DyCoke, its pre-LLM stage: token temporal merging (TTM).

Reference: Tao, Qin, You, Sui, Wang, "DyCoke: Dynamic Compression of Tokens for Fast Video Large
Language Models", CVPR 2025, arXiv 2411.15024; official code ``KD-TAO/DyCoke``
(``dycole_ttm`` in ``llava_arch.py``; lmms-eval flags ``dycoke_k=0.7, dycoke_l=3, dycoke_p=0.7``).

What it does, as the official TTM: frames are taken in windows of four. The first frame of each
window (t % 4 == 0, the "anchor") is kept whole. Every other frame keeps only its tokens that are
*least* similar (cosine) to the token at the same grid position of its reference frame: frames
4j+1 and 4j+3 compare with the frame just before (4j and 4j+2), frame 4j+2 with the anchor 4j. The
redundant tokens are dropped (the official code drops them; nothing is averaged), so this is pure
pruning and kept tokens keep their original positions.

Ratio mapping: DyCoke's ``K`` (``dycoke_k``, fraction of a non-anchor frame's tokens removed, 0.7
by default) is a per-frame rate, and its second stage prunes the KV cache during decoding. Here
the retain ratio is the fraction of video tokens that reach the LLM: the A anchor frames keep N
tokens each and the ``T - A`` other frames share the rest ``K - A*N`` equally (largest remainder,
ties to the lower frame), i.e. ``dycoke_k = 1 - (r*T - A) / (T - A)``; the paper default 0.7 equals
``retain_ratio = 0.475`` for T divisible by 4. Below ``retain_ratio = A / T`` (about 1/4) the anchors
cannot be kept whole: they then share K equally and keep evenly spaced tokens (DyCoke has no
within-frame criterion for anchors), and the other frames keep none.

Consequence at low ratios (this is the paper's algorithm, not a bug): TTM's rate is the same for
every non-anchor frame and content-blind, and the anchors are always whole, so the lowest ratio the
official TTM can reach is ``A / T`` (``dycoke_k = 1``: every non-anchor frame dropped). While the
non-anchor frames keep at least one token each (``retain_ratio > A / T``; 0.25 for T divisible by
4), a one-frame insert ("needle") in a non-anchor frame survives, its tokens being the least similar
to the reference. At ``retain_ratio <= A / T`` it survives only if it lands on an anchor frame
(and, below ``A / T``, on one of the evenly spaced anchor tokens): on the coverage benchmark
(``vcast bench coverage``, 16 frames) needle hit drops from 1.0 at 0.26 to the share of needles
that fall on frames 4, 8 or 12 at 0.25 and below. Moving budget to distinctive frames is what
DyCoke does not do; use ``vidcom2`` or ``vcast`` for that.

Not faithful / not included: the dynamic KV-cache pruning during decoding (stage 2: attention of the
last token at LLM layer 3, ``dycoke_p``) is not pre-LLM and needs eager attention, so it is left out.
Two quirks of the official loop are not reproduced: its last window's frame 4j+2 is never pruned
(the loop stops at ``T - 4``), and with an odd T its last frame is dropped; here every window is
treated the same and the last frame is kept like any other. ``curvature`` reports each non-anchor
frame's mean dissimilarity to its reference (0 for anchors). Vectorised; no host sync beyond the
finiteness check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from vcast.config import MethodConfig
from vcast.core.selection import Selection
from vcast.methods._common import (
    colocated_cosine,
    evenly_spaced_mask,
    float_frames,
    kept_total,
    make_selection,
    mask_to_index,
    one_video,
    topk_mask,
)
from vcast.methods.registry import MethodSpec, register_method

# The reference frame of frame t, as an offset back from t, by t % 4 (DyCoke's window of four).
REFERENCE_OFFSET = (0, 1, 2, 1)


@dataclass(frozen=True)
class DyCokeConfig(MethodConfig):
    """DyCoke (TTM stage) has no options beyond :class:`~vcast.config.MethodConfig`; its merging
    rate follows from ``retain_ratio`` (see the module docstring)."""

    method: ClassVar[str] = "dycoke"


def dycoke_budget(frames: int, tokens: int, total: int, device: torch.device) -> torch.Tensor:
    """``LongTensor[T]`` per-frame budgets summing to ``total``: the anchors (t % 4 == 0) whole and
    the other frames an equal share of the rest, or, when ``total`` cannot cover the anchors, the
    anchors an equal share of ``total`` and the others nothing (shares: largest remainder, ties to
    the lower frame)."""
    t = torch.arange(frames, device=device)
    anchor = t % 4 == 0
    num_anchors = (frames + 3) // 4
    if total >= num_anchors * tokens and frames > num_anchors:
        base, extra = divmod(total - num_anchors * tokens, frames - num_anchors)
        rank = t - t // 4 - 1  # index among the non-anchor frames
        return torch.where(anchor, torch.full_like(t, tokens), base + (rank < extra).long())
    base, extra = divmod(total, num_anchors)
    return torch.where(anchor, base + (t // 4 < extra).long(), torch.zeros_like(t))


def select_dycoke(features: torch.Tensor, config: DyCokeConfig) -> Selection:
    """DyCoke's temporal token merging at exactly K tokens.

    Args:
        features: ``Tensor[T, N, D]``.
        config: a :class:`DyCokeConfig`.

    Returns:
        A :class:`Selection`; ``curvature`` is each frame's mean dissimilarity to its reference.
    """
    x = one_video(features)
    xf, _ = float_frames(x)
    t, n, _ = x.shape
    dev = x.device
    k = kept_total(t, n, config.retain_ratio)
    budget = dycoke_budget(t, n, k, dev)
    frame = torch.arange(t, device=dev)
    offset = torch.tensor(REFERENCE_OFFSET, device=dev)[frame % 4]
    anchor = offset == 0
    norms = torch.linalg.vector_norm(xf, dim=-1)
    similarity = torch.ones(t, n, device=dev)  # anchors: compared with themselves
    for lag in (1, 2):  # DyCoke's two reference offsets (not a loop over frames)
        if t > lag:
            pick = (offset[lag:] == lag).unsqueeze(1)
            similarity[lag:] = torch.where(pick, colocated_cosine(xf, norms, lag), similarity[lag:])
    score = torch.where(anchor.unsqueeze(1), torch.full_like(similarity, -2.0), similarity)
    mask = topk_mask(score, budget, largest=False)
    mask = torch.where(anchor.unsqueeze(1) & (budget < n).unsqueeze(1), evenly_spaced_mask(budget, n), mask)
    dissimilarity = torch.where(anchor, torch.zeros(t, device=dev), (1.0 - similarity).mean(dim=1))
    return make_selection(mask_to_index(mask, k), budget, t, n, curvature=dissimilarity)


register_method(MethodSpec(
    name="dycoke",
    config_cls=DyCokeConfig,
    select=select_dycoke,
    summary="DyCoke (TTM stage): windows of 4 frames; drop tokens similar to the reference frame's",
))
