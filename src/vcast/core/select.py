"""V-CAST token selection on plain tensors, vectorised over frames and videos.

Passes over the ``[T, N, D]`` features (float32): the frame means, the token norms and the token /
frame-mean dot products, three reads in all (plus one fp32 conversion for half-precision inputs,
and about a dozen more streaming passes with four ``[T, N, D]`` temporaries when
``token_curvature_weight > 0``). Everything after that works on ``[F]``
and ``[F, N]`` tensors. No Python loop runs over frames; the only host synchronisations are the
finiteness check (``check_finite=True``) and, for ``retain_ratio="auto"``, reading the per-video
kept counts (the output length depends on the data).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from vcast.config import VCastConfig
from vcast.core.budget import allocate_frames, total_budget
from vcast.core.curvature import CURVATURES, EPS, token_curvature, trajectory_motion
from vcast.core.layout import BatchLayout, check_finite, check_video
from vcast.core.selection import Selection
from vcast.errors import InputError

# Mean frame-trajectory step at which the adaptive ratio covers 1 - 1/e of [min_ratio, max_ratio].
AUTO_MOTION_SCALE = 0.1


def resolve_config(config: VCastConfig | None, overrides: dict[str, Any]) -> VCastConfig:
    """The config to use: ``config`` (default :class:`VCastConfig`) with keyword overrides."""
    cfg = VCastConfig() if config is None else config
    if not isinstance(cfg, VCastConfig):
        raise InputError(f"config must be a VCastConfig, got {type(cfg).__name__}")
    return cfg.replace(**overrides) if overrides else cfg


def as_video_list(features: torch.Tensor | list[torch.Tensor] | tuple) -> tuple[list[torch.Tensor], bool]:
    """Validate the input and return (videos, was_single)."""
    single = isinstance(features, torch.Tensor)
    videos = [features] if single else list(features)
    if not videos:
        raise InputError("got an empty list of videos; pass at least one Tensor[T, N, D]")
    for i, v in enumerate(videos):
        check_video(v, "features" if single else f"features[{i}]")
    d, dev = videos[0].shape[2], videos[0].device
    for i, v in enumerate(videos):
        if v.shape[2] != d:
            raise InputError(f"features[{i}] has D={v.shape[2]}, features[0] has D={d}; D must match")
        if v.device != dev:
            raise InputError(f"features[{i}] is on {v.device}, features[0] on {dev}; move them together")
    return videos, single


def dual_anchor_scores(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The spatial score of every token, ``FloatTensor[T, N]``.

    ``s = (1 - cos(token, r_t)) + (||token|| - min_t) / (max_t - min_t + 1e-6)``, min/max over
    the frame's token norms; cosine as ``F.cosine_similarity`` (eps 1e-6).

    Args:
        x: ``FloatTensor[T, N, D]`` tokens.
        r: ``FloatTensor[T, D]`` L2-normalised frame means.
    """
    return _dual_anchor(x, r)[0]


# Token norms below this are too small for fp32 squares (|x_i| < ~1e-19 underflows): rescale first.
_TINY_NORM = 2.0**-50


def _dual_anchor(x: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dual_anchor_scores` and a 0-dim bool tensor: True when fp32 could not hold the
    squared token norms (overflow past ~1e19, underflow under ~1e-15), so the scores need
    :func:`_rescaled` features."""
    norms = torch.linalg.vector_norm(x, dim=-1)
    # [T,1,D] @ [T,D,N]: a row-times-matrix product streams x once (x @ r as a column is ~5x slower on CPU).
    dots = torch.bmm(r.unsqueeze(1), x.transpose(1, 2)).squeeze(1)
    r_sq = (r * r).sum(-1, keepdim=True)
    cos = dots / torch.sqrt(torch.clamp_min(norms * norms * r_sq, EPS * EPS))
    lo = norms.amin(dim=1, keepdim=True)
    hi = norms.amax(dim=1, keepdim=True)
    scores = (1.0 - cos) + (norms - lo) / (hi - lo + 1e-6)
    unsafe = ~torch.isfinite(hi).all() | ~torch.isfinite(norms * norms).all() | (hi < _TINY_NORM).any()
    return scores, unsafe


def _power_of_two_scale(amax: torch.Tensor) -> torch.Tensor:
    """``2**-e`` with ``amax * 2**-e`` in [0.5, 1): an exact rescaling factor (``1`` where amax is 0)."""
    exponent = torch.frexp(amax.clamp_min(torch.finfo(amax.dtype).tiny)).exponent
    return torch.ldexp(torch.ones_like(amax), -exponent)


def frame_directions(means: torch.Tensor) -> torch.Tensor:
    """L2-normalised frame means ``FloatTensor[T, D]``, the same for ``means`` at any scale.

    Each row is first multiplied by a power of two that brings its largest entry into [0.5, 1);
    that is exact in floating point, so for ordinary means the result is bit for bit
    ``F.normalize(means, eps=1e-6)``, while means near 1e30 (squares overflow) or 1e-30 (squares
    underflow, or the norm falls under the eps) keep their true direction. All-zero rows stay 0.
    """
    scale = _power_of_two_scale(means.abs().amax(dim=-1, keepdim=True))
    return F.normalize(means * scale, dim=-1, eps=EPS)


def _rescaled(x: torch.Tensor) -> torch.Tensor:
    """``x[T, N, D]`` with each frame multiplied by a power of two so its largest entry is in
    [0.5, 1): the slow path of :func:`select_tokens` for features at extreme scales (rare)."""
    return x * _power_of_two_scale(x.abs().amax(dim=(1, 2), keepdim=True))


def frame_ranks(scores: torch.Tensor) -> torch.Tensor:
    """``LongTensor[T, N]``: each token's rank in its frame by ``scores[T, N]``, descending (0 = best,
    ties to the lower index). A frame's top-k tokens are those with rank < k."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranks = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, ranks)


def frame_means(x: torch.Tensor) -> torch.Tensor:
    """Mean token of each frame, ``FloatTensor[T, D]`` from ``x[T, N, D]`` (one streaming pass via bmm)."""
    ones = torch.ones(1, 1, x.shape[1], dtype=x.dtype, device=x.device).expand(x.shape[0], 1, x.shape[1])
    return torch.bmm(ones, x).squeeze(1) / x.shape[1]


def auto_ratio(r: torch.Tensor, layout: BatchLayout, min_ratio: float, max_ratio: float) -> torch.Tensor:
    """The adaptive retain ratio of each video, ``DoubleTensor[B]`` in ``[min_ratio, max_ratio]``.

    ``min + (max - min) * (1 - exp(-motion / AUTO_MOTION_SCALE))`` with the frame-trajectory motion of
    :func:`vcast.core.curvature.trajectory_motion` (static clips get ``min_ratio``, busy ones tend to
    ``max_ratio``).

    Args:
        r: ``FloatTensor[F, D]``, the L2-normalised frame means of every frame of the batch.
        layout: the batch layout.
        min_ratio, max_ratio: the range.
    """
    motion = torch.nan_to_num(trajectory_motion(r, layout), nan=0.0)  # NaN only with unchecked features
    return (min_ratio + (max_ratio - min_ratio) * (1.0 - torch.exp(-motion / AUTO_MOTION_SCALE))).double()


def adaptive_ratios(videos: list[torch.Tensor], min_ratio: float, max_ratio: float) -> list[float]:
    """The ratio ``retain_ratio="auto"`` picks for each video (host floats), for any method.

    The rule V-CAST's core applies (:func:`auto_ratio` on the L2-normalised frame means, float32);
    every other method then runs at the ratio it returns. One streaming pass over each video and one
    host sync (the ratios decide the kept counts).

    Args:
        videos: ``Tensor[T_b, N_b, D]`` per video (same D, same device).
        min_ratio, max_ratio: the range (see :class:`~vcast.config.MethodConfig`).
    """
    videos, _ = as_video_list(videos)
    layout = BatchLayout.build(videos, videos[0].device)
    r = torch.empty(layout.num_frames, videos[0].shape[2], dtype=torch.float32, device=videos[0].device)
    for ids, frame_idx in layout.groups:
        x = videos[ids[0]] if len(ids) == 1 else torch.cat([videos[b] for b in ids])
        r.index_copy_(0, frame_idx, frame_directions(frame_means(x.float())))
    check_finite(r, "frame means")
    return auto_ratio(r, layout, min_ratio, max_ratio).tolist()


def _totals(cfg: VCastConfig, layout: BatchLayout, r: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Per-video K as a device tensor and a host list."""
    if not cfg.is_auto:
        host = [total_budget(t, n, cfg.retain_ratio, cfg.min_tokens_per_frame) for t, n in
                zip(layout.frames, layout.tokens)]
        return torch.tensor(host, device=r.device), host
    ratio = auto_ratio(r, layout, cfg.min_ratio, cfg.max_ratio)
    frames = torch.tensor(layout.frames, device=r.device, dtype=torch.float64)
    tokens = torch.tensor(layout.tokens, device=r.device, dtype=torch.float64)
    k = torch.round(frames * tokens * ratio).clamp(min=1).minimum(frames * tokens)
    k = torch.maximum(k, frames * tokens.clamp(max=cfg.min_tokens_per_frame)).long()
    return k, k.tolist()


def _token_curvature(x: torch.Tensor, frame_idx: torch.Tensor, layout: BatchLayout, prev: torch.Tensor,
                     nxt: torch.Tensor) -> torch.Tensor:
    """:func:`~vcast.core.curvature.token_curvature` of one shape group (frames ``frame_idx``)."""
    local = torch.empty(layout.num_frames, dtype=torch.long, device=x.device)
    local[frame_idx] = torch.arange(frame_idx.numel(), device=x.device)
    return token_curvature(x, local[prev[frame_idx]], local[nxt[frame_idx]])


def _rescaled_per_video(x: torch.Tensor, frame_idx: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
    """``x`` with each video's frames multiplied by one power of two (its largest entry into
    [0.5, 1)): token curvature compares frames of a video, so they share the factor."""
    video = layout.frame_video[frame_idx]
    amax = torch.zeros(layout.num_videos, dtype=x.dtype, device=x.device)
    amax = amax.scatter_reduce(0, video, x.abs().amax(dim=(1, 2)), reduce="amax")
    return x * _power_of_two_scale(amax)[video].view(-1, 1, 1)


def _warn_if_floor_keeps_all(cfg: VCastConfig, layout: BatchLayout) -> None:
    """Warn when ``min_tokens_per_frame`` is at least a video's tokens per frame: nothing is pruned."""
    if cfg.retain_ratio == 1.0 or cfg.min_tokens_per_frame <= 1:  # 1: the default one-per-frame floor
        return
    full = sorted({n for n in layout.tokens if cfg.min_tokens_per_frame >= n})
    if full:
        warnings.warn(f"min_tokens_per_frame={cfg.min_tokens_per_frame} is not below the {full[0]} tokens per frame "
                      "of a video here, so every frame keeps all its tokens and nothing is pruned; lower "
                      "min_tokens_per_frame (it is capped at the tokens per frame)", UserWarning, stacklevel=3)


def select_tokens(
    features: torch.Tensor | list[torch.Tensor],
    config: VCastConfig | None = None,
    *,
    check_finite_features: bool = True,
    **overrides: Any,
) -> Selection | list[Selection]:
    """Select the tokens V-CAST keeps.

    Args:
        features: one video ``Tensor[T, N, D]`` or a list of videos with different T and N (same D,
            same device), fp32/fp16/bf16, CPU or CUDA.
        config: a :class:`VCastConfig` (default: the published method at ``retain_ratio=0.25``);
            ``reproduce="authors"`` runs :mod:`vcast.core.authors` (the published code's behaviour).
        check_finite_features: raise on NaN/inf features, and detect features so large or small
            (beyond ~1e19 or under ~1e-15) that fp32 cannot hold their squared norms, which are then
            rescaled exactly so the selection is the same at any scale (one host sync on CUDA).
            With False nothing syncs: the per-frame budgets are still scale-invariant and every
            call returns a selection of the configured size, but NaN/inf features or features at
            such extreme scales give an arbitrary ranking inside their frames.
        **overrides: config fields to override, e.g. ``retain_ratio=0.1``.

    Returns:
        A :class:`Selection` for a tensor input, a list of them for a list input.
    """
    cfg = resolve_config(config, overrides)
    videos, single = as_video_list(features)
    if cfg.reproduce == "authors":
        from vcast.core.authors import authors_select

        out = authors_select(videos, cfg)
        return out[0] if single else out
    device = videos[0].device
    layout = BatchLayout.build(videos, device)
    d = videos[0].shape[2]
    _warn_if_floor_keeps_all(cfg, layout)

    r = torch.empty(layout.num_frames, d, dtype=torch.float32, device=device)
    scores, blocks, unsafe = [], [], []
    prev, nxt = layout.neighbours() if cfg.token_curvature_weight > 0 else (None, None)
    for ids, frame_idx in layout.groups:  # one iteration per distinct (N, dtype), not per frame
        x = videos[ids[0]] if len(ids) == 1 else torch.cat([videos[b] for b in ids])
        x = x.float()
        r_g = frame_directions(frame_means(x))
        s, bad = _dual_anchor(x, r_g)
        if cfg.token_curvature_weight > 0:
            s = s + cfg.token_curvature_weight * _token_curvature(x, frame_idx, layout, prev, nxt)
        r.index_copy_(0, frame_idx, r_g)
        scores.append(s)
        blocks.append(x)
        unsafe.append(bad)
    if check_finite_features:  # one host sync for the finiteness check and the range flags
        status = torch.stack([~torch.isfinite(r).all(), *unsafe]).tolist()
        if status[0]:
            check_finite(r, "frame means")
        for g, ((_, frame_idx), bad) in enumerate(zip(layout.groups, status[1:])):
            if bad:  # fp32 cannot hold these features' squared norms: rescale each frame exactly
                x = blocks[g]
                s = dual_anchor_scores(_rescaled(x), r[frame_idx])
                if cfg.token_curvature_weight > 0:
                    s = s + cfg.token_curvature_weight * _token_curvature(
                        _rescaled_per_video(x, frame_idx, layout), frame_idx, layout, prev, nxt)
                scores[g] = s

    # NaN features (only reachable with check_finite_features=False) must not break the budgets.
    curvature = torch.nan_to_num(CURVATURES[cfg.curvature](r, layout), nan=0.0, posinf=0.0, neginf=0.0)
    totals, host_totals = _totals(cfg, layout, r)
    weights = layout.segment_softmax(curvature / cfg.temperature)
    budget = allocate_frames(weights, totals, layout, cfg.min_tokens_per_frame)

    keep: list[torch.Tensor | None] = [None] * layout.num_videos
    for (ids, frame_idx), s in zip(layout.groups, scores):
        n = s.shape[1]
        mask = (frame_ranks(s) < budget[frame_idx].unsqueeze(1)).reshape(-1)
        sizes = [host_totals[b] for b in ids]
        counts = [layout.frames[b] * n for b in ids]
        token_offset = torch.repeat_interleave(
            torch.tensor([0] + counts[:-1], device=device).cumsum(0),
            torch.tensor(counts, device=device),
            output_size=sum(counts),
        )
        local_index = torch.arange(mask.numel(), device=device) - token_offset
        total = sum(sizes)
        dest = torch.where(mask, mask.long().cumsum(0) - 1, torch.full_like(local_index, total))
        packed = torch.empty(total + 1, dtype=torch.long, device=device).scatter_(0, dest, local_index)
        for b, kept in zip(ids, torch.split(packed[:total], sizes)):
            keep[b] = kept

    per_frame = torch.split(budget, layout.frames)
    per_curv = torch.split(curvature, layout.frames)
    out = [
        Selection(keep[b], per_frame[b], per_curv[b], layout.frames[b], layout.tokens[b])
        for b in range(layout.num_videos)
    ]
    return out[0] if single else out
