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
By default two quirks of the official loop are not reproduced: its last window's frame 4j+2 is never
pruned (the loop stops at ``T - 4``), and with an odd T its last frame is dropped; here every window
is treated the same and the last frame is kept like any other. ``curvature`` reports each non-anchor
frame's mean dissimilarity to its reference (0 for anchors). Vectorised; no host sync beyond the
finiteness check.

``reproduce="authors"``: ``dycole_ttm`` of ``KD-TAO/DyCoke`` (``llava/model/llava_arch.py``, read at
dd74634), line by line against the default:

- rate: the official per-frame ``K`` (``dycoke_k``) is derived from the retain ratio as
  ``dycoke_k = (4 - 4r) / 3`` rounded to 12 decimals (so ``retain_ratio=0.475`` is exactly the
  lmms-eval default ``dycoke_k=0.7``), and every pruned frame keeps ``int((1 - dycoke_k) * N)``
  tokens, float arithmetic as published; default: the anchors whole and an exact share of K;
- frames: pairs (2i, 2i+1) first, the odd frame pruned against the even one (cosine of the
  L2-normalised tokens); then frame 4j+2 pruned against 4j (cosine of the raw tokens) for
  ``4j < T - 4`` only, so the last window's 4j+2 stays whole; with an odd T the last frame is
  dropped. The kept count is therefore not ``round(T*N*r)``. Default: every window alike, K exact;
- arithmetic in the features' dtype (fp16/bf16 on real checkpoints), ``torch.topk`` ties; default:
  float32, ties to the lower index;
- where the official code cannot run, a :class:`~vcast.errors.ReproduceError`: T <= 4 (its second
  pass stacks an empty list) and ``retain_ratio < 1/4`` (no ``dycoke_k`` in [0, 1] reaches it);
- not reproducible in a :class:`~vcast.core.Selection`: the official code emits a pruned frame's
  kept tokens in ascending-similarity order (``topk``'s sorted output) rather than grid order; the
  kept set and counts are reproduced, the sequence order is grid order as in every vcast method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from vcast.config import MethodConfig
from vcast.core.authors import topk_rows
from vcast.core.selection import Selection
from vcast.errors import ReproduceError
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
    REPRODUCE_MODES: ClassVar[tuple[str, ...]] = ("authors",)


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


def published_rate(retain_ratio: float) -> float:
    """The official ``dycoke_k`` that a retain ratio stands for: ``(4 - 4r) / 3`` (12 decimals)."""
    return round((4.0 - 4.0 * retain_ratio) / 3.0, 12)


def select_dycoke_authors(x: torch.Tensor, config: DyCokeConfig) -> Selection:
    """DyCoke's TTM as the official ``dycole_ttm`` runs it (module docstring, ``reproduce="authors"``)."""
    t, n, _ = x.shape
    r = config.retain_ratio
    if t <= 4:
        raise ReproduceError(f"DyCoke's official TTM cannot run on T={t} frames (it needs T >= 5: its second "
                             "pass over windows of four stacks an empty list); use reproduce=None")
    if r < 0.25:
        raise ReproduceError(f"DyCoke's official TTM cannot reach retain_ratio={r}: its anchor frames are always "
                             "whole, so the lowest ratio is 1/4 (dycoke_k=1); use reproduce=None below 1/4")
    per_frame = int((1 - published_rate(r)) * n)
    dev = x.device
    odd = torch.arange(1, t - t % 2, 2, device=dev)  # pruned against the frame before (pass 1)
    second = torch.arange(2, t - 2, 4, device=dev)  # 4j + 2 for 4j < T - 4, pruned against 4j (pass 2)
    pass1 = F.cosine_similarity(F.normalize(x[odd - 1], p=2, dim=-1), F.normalize(x[odd], p=2, dim=-1), dim=-1)
    pass2 = F.cosine_similarity(x[second - 2], x[second], dim=-1)
    frames = torch.cat([odd, second])
    sims = torch.cat([pass1, pass2])
    budget = torch.full((t,), n, dtype=torch.long, device=dev)
    budget[frames] = per_frame
    if t % 2:
        budget[t - 1] = 0  # the official loop never visits the last frame of an odd T
    mask = budget.unsqueeze(1) > torch.arange(n, device=dev)  # whole frames (and the dropped one)
    mask[frames] = topk_rows(sims, [per_frame] * len(frames), largest=False, sorted=True)
    dissimilarity = torch.zeros(t, device=dev)
    dissimilarity[frames] = (1.0 - sims.float()).mean(dim=1)
    k = int(budget.sum())
    return make_selection(mask_to_index(mask, k), budget, t, n, curvature=dissimilarity)


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
    if config.reproduce == "authors":
        return select_dycoke_authors(x, config)
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
    every_frame_note="no: at retain_ratio <= about 1/4 only the anchor frames (t % 4 == 0) keep tokens "
                     "(DyCoke's content-blind rate; authors mode: also at exactly 1/4 and the last frame of an odd T)",
))
