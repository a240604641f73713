"""V-CAST as its authors' published code runs it (``VCastConfig(reproduce="authors")``).

The reference is ``xinyouu/V-CAST``, ``compressor/v_cast/modeling_qwen3_vl_v_cast.py`` (read at
commit c235ef3): one video at a time, a loop over frames. This module reproduces its behaviour on
the same features, written independently and vectorised over frames where that changes no bit.
Where it differs from vcast's default (:func:`vcast.core.select.select_tokens`), step by step:

1. Frame summaries. Both: ``normalize(mean over tokens, eps=1e-6)``. Published: in the features'
   dtype (bf16 on the Qwen3-VL checkpoints). Default: in float32, so fp32, fp16 and bf16 inputs get
   the same budgets up to input rounding.
2. Curvature ``1 - cos(v_in, v_out)`` (eps 1e-6), 1 at both ends. Published: in the features' dtype.
   Default: float32.
3. Budget weights ``softmax(curvature / 0.7)``, float32 in both.
4. Total ``K = round(T*N*r)`` clamped to ``[1, T*N]``, at least ``T*min_k``: identical.
5. Split over frames. Both give every frame ``min_k`` and then ``floor(w_t * R)`` of the rest R.
   Published: the weights are renormalised (``w / max(sum w, 1e-6)``) and ``w_t * R`` is computed in
   float32; the leftover loop takes the frame with the largest fractional part and, because that
   part is never cleared, gives it *every* leftover token until the frame is full, then moves to the
   next one (ties: lower frame). If float32 rounding makes the floors overshoot K, tokens are taken
   back from the lowest-weight frames (``argsort`` order). Default: float64, and the leftovers go
   one per frame in order of fractional part (largest remainder, repeated passes), which is what the
   paper's text describes; concentrating up to ``T - 1`` tokens on one frame is an artefact of the
   loop, so the default follows the paper.
6. Token score ``(1 - cos(token, rep)) + minmax(||token||)``. Published: the cosine in the features'
   dtype, then float32; the norm term in float32. Default: float32 throughout.
7. Top-k per frame. Published: ``torch.topk(score, k, sorted=False)``, whose order among *equal*
   scores is PyTorch's (not specified, and not the same on CPU and CUDA); reproduced by calling
   ``torch.topk`` the same way on the same rows (frames sharing a k in one call: rows of a batched
   ``topk`` are selected exactly as a 1-D call, checked in the tests). Default: ties to the lower
   token index (a stable sort), the same on every device.
8. One-frame videos (T <= 1). Published: left unpruned (all N tokens kept). Reproduced, with a
   ``UserWarning`` so it is never silent. Default: pruned like any other video.

Not reproduced, because they are integration behaviour of the published Qwen3-VL patch rather than
the method: it disables pruning for the whole batch when a prompt batch has more than one row, and
it skips pruning (with a print) when ``grid_thw`` disagrees with the token count; vcast prunes every
row of a batch and raises on mismatched grids.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from vcast.config import VCastConfig
from vcast.core.layout import check_finite
from vcast.core.selection import Selection

# The published code's constants.
PUBLISHED_EPS = 1e-6


def topk_rows(scores: torch.Tensor, k: torch.Tensor | list[int], largest: bool = True,
              sorted: bool = True) -> torch.Tensor:
    """``BoolTensor[R, N]``: the ``k[i]`` entries of each row that ``torch.topk(scores[i], k[i],
    largest=largest, sorted=sorted)`` picks, ties included.

    A per-row loop calling ``torch.topk`` is what published code does; here rows sharing a k are one
    batched call (one call per distinct k; the host reads k). Used by every ``reproduce=`` mode.

    Args:
        scores: ``Tensor[R, N]``.
        k: per-row counts, ``0 <= k[i] <= N``.
        largest, sorted: as ``torch.topk``.
    """
    ks = k.tolist() if isinstance(k, torch.Tensor) else list(k)
    mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    by_k: dict[int, list[int]] = {}
    for row, kv in enumerate(ks):
        by_k.setdefault(int(kv), []).append(row)
    for kv, rows in by_k.items():  # one call per distinct budget, not per row
        if kv <= 0:
            continue
        idx = torch.tensor(rows, device=scores.device)
        top = torch.topk(scores.index_select(0, idx), kv, dim=1, largest=largest, sorted=sorted).indices
        mask[idx] = torch.zeros(len(rows), scores.shape[1], dtype=torch.bool, device=scores.device).scatter_(
            1, top, True)
    return mask


def published_budget(weights: torch.Tensor, total: int, min_k: int, max_k: int) -> torch.Tensor:
    """The published per-frame split, ``LongTensor[T]`` (step 5 of the module docstring).

    Args:
        weights: ``FloatTensor[T]`` budget weights (the softmax of curvature / temperature).
        total: K.
        min_k: the per-frame floor.
        max_k: N.
    """
    t = weights.shape[0]
    total = max(0, min(int(total), t * max_k))
    min_k = max(0, min(int(min_k), max_k))
    floor_k = 0 if total < t * min_k else min_k
    alloc = torch.full((t,), floor_k, dtype=torch.long, device=weights.device)
    rest = total - t * floor_k
    if rest <= 0:
        return alloc
    w = weights.float().clamp_min(0.0)
    if float(w.sum()) <= 0.0:
        w = torch.ones_like(w)
    w = w / w.sum().clamp_min(1e-6)
    raw = w * float(rest)  # float32, as published
    alloc = alloc + torch.floor(raw).long().clamp(max=max_k - floor_k)
    left = total - int(alloc.sum())
    if left > 0:
        # The published loop fills the frame with the largest fractional part to max_k, then the
        # next one (argmax: ties to the lower frame): in closed form, a stable descending order and
        # a running sum of the spare capacities.
        frac = (raw - torch.floor(raw)).masked_fill(alloc >= max_k, -1.0)
        order = torch.sort(frac, descending=True, stable=True).indices
        cap = (max_k - alloc[order]) * (frac[order] >= 0)
        give = (left - (cap.cumsum(0) - cap)).clamp(min=0).minimum(cap)
        alloc = alloc.index_add(0, order, give)
    elif left < 0:
        # Overshoot from float32 rounding: one token back from each of the lowest-weight frames
        # above the floor, in the order of the published call ``argsort(weights)``.
        order = torch.argsort(w, descending=False)
        can = alloc[order] > floor_k
        take = can & (can.long().cumsum(0) <= -left)
        alloc = alloc.index_add(0, order, -take.long())
    return alloc


def published_curvature(reps: torch.Tensor) -> torch.Tensor:
    """``Tensor[T]`` (the reps' dtype): ``1 - cos`` of consecutive velocities, 1 at both ends.

    Args:
        reps: ``Tensor[T, D]``, normalised frame means in the features' dtype.
    """
    t = reps.shape[0]
    if t <= 1:
        return torch.ones(t, dtype=torch.float32, device=reps.device)
    v_in = reps[1:-1] - reps[:-2]
    v_out = reps[2:] - reps[1:-1]
    inner = 1.0 - F.cosine_similarity(v_in, v_out, dim=-1, eps=PUBLISHED_EPS)
    one = torch.ones(1, dtype=inner.dtype, device=reps.device)
    return torch.cat([one, inner, one])


def _one_video(x: torch.Tensor, ratio: float, cfg: VCastConfig) -> Selection:
    t, n, _ = x.shape
    dev = x.device
    reps = F.normalize(x.mean(dim=1), dim=-1, eps=PUBLISHED_EPS)  # features' dtype
    check_finite(reps, "frame means")  # vcast's NaN/inf guard (the original has none)
    if t <= 1:
        warnings.warn("reproduce='authors': the published V-CAST code leaves a one-frame video unpruned; "
                      f"all {n} tokens are kept (reproduce=None prunes it)", UserWarning, stacklevel=5)
        keep = torch.arange(t * n, device=dev)
        return Selection(keep, torch.full((t,), n, dtype=torch.long, device=dev),
                         torch.ones(t, dtype=torch.float32, device=dev), t, n)
    curvature = published_curvature(reps)
    weights = torch.softmax(curvature.float() / float(cfg.temperature), dim=0)
    total = max(1, min(t * n, int(round(float(t * n) * float(ratio)))))
    min_k = max(0, min(int(cfg.min_tokens_per_frame), n))
    if min_k > 0:
        total = max(total, t * min_k)
    budget = published_budget(weights, total, min_k, n)
    sim = F.cosine_similarity(x, reps.unsqueeze(1), dim=-1, eps=PUBLISHED_EPS)  # [T, N], features' dtype
    norm = x.float().norm(dim=-1)
    lo = norm.amin(dim=1, keepdim=True)
    norm = (norm - lo) / (norm.amax(dim=1, keepdim=True) - lo + 1e-6)
    score = (1.0 - sim).float() + norm
    mask = topk_rows(score, budget, largest=True, sorted=False)
    keep = mask.reshape(-1).nonzero().flatten()  # host sync: the published code syncs per frame too
    return Selection(keep, budget, curvature.float(), t, n)


def authors_select(videos: list[torch.Tensor], cfg: VCastConfig, **_: Any) -> list[Selection]:
    """One :class:`Selection` per video, as the published code selects (module docstring).

    Args:
        videos: ``Tensor[T_b, N_b, D]`` per video (validated by the caller).
        cfg: a :class:`VCastConfig` with ``reproduce="authors"``; ``retain_ratio="auto"`` picks each
            video's ratio with :func:`vcast.core.select.adaptive_ratios` first.
    """
    from vcast.core.select import adaptive_ratios

    ratios = adaptive_ratios(videos, cfg.min_ratio, cfg.max_ratio) if cfg.is_auto else [cfg.retain_ratio] * len(videos)
    return [_one_video(x, r, cfg) for x, r in zip(videos, ratios)]  # per video, as published
