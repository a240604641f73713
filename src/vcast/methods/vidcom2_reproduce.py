"""VidCom2's ``reproduce="authors"`` and ``reproduce="vllm"`` modes (see :mod:`vcast.methods.vidcom2`
for what each does and where it differs from vcast's default, step by step).

References, read for this module: the authors' ``xuyang-liu16/VidCom2``
``token_compressor/vidcom2/vidcom2.py`` (commit 944a17d) and vLLM's
``vllm/multimodal/video_prune/vidcom2.py`` (commit 0f17ee0). Both score on the lowest-variance half
of the channels with a multi-scale Gaussian kernel and run every step in the features' dtype; this
module evaluates the same expressions, in that dtype, with one ``torch.topk`` call per distinct
per-frame count (:func:`vcast.core.authors.topk_rows`: the same picks, ties included, as the
published per-frame loop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vcast.core.authors import topk_rows
from vcast.core.selection import Selection
from vcast.methods._common import frame_counts, make_selection, mask_to_index

# Bandwidths a of the kernel sum_a exp(-d^2 / (2a)), as both references.
BANDWIDTHS = (0.125, 0.25, 0.5, 1.0, 2.0)


def _kernel(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    dist_sq = ((x - centre) ** 2).sum(dim=-1)
    return sum(torch.exp(-dist_sq / (2.0 * a)) for a in BANDWIDTHS)


def published_similarities(x: torch.Tensor, channel_ratio: float, at_least_one: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(video similarity, frame similarity)``, each ``Tensor[T, N]`` in the features' dtype.

    Args:
        x: ``Tensor[T, N, D]``.
        channel_ratio: fraction of channels kept (``int(D * ratio)`` of them, lowest variance first).
        at_least_one: keep at least one channel (vLLM does; the authors' code keeps ``int(D/2)``).
    """
    t, n, d = x.shape
    flat = x.reshape(t * n, d)
    count = int(d * channel_ratio)
    if at_least_one:
        count = max(1, count)
    low = torch.topk(flat.var(dim=0, unbiased=False), k=count, largest=False).indices  # order kept
    units = F.normalize(flat.index_select(1, low).view(t, n, count), dim=-1)
    video = _kernel(units, units.mean(dim=(0, 1), keepdim=True))
    frame = _kernel(units, units.mean(dim=1, keepdim=True))
    return video, frame


def published_counts(video_sim: torch.Tensor, base: float, temperature: float, cap: bool) -> torch.Tensor:
    """Per-frame counts ``round(scale_t * N)`` (at least 1; at most N with ``cap``), ``LongTensor[T]``.

    ``scale_t = base * (1 + p_t - mean p)`` clamped to at most 1, ``p = softmax((u - max u) / temperature)``,
    ``u_t = -mean_i video_sim[t, i]``, all in the features' dtype as published.
    """
    n = video_sim.shape[1]
    u = -video_sim.mean(dim=-1)
    p = F.softmax((u - u.max()) / temperature, dim=0)
    scales = (base * (1 + p - p.mean())).clamp(max=1.0)
    counts = (scales * n).round().long()
    return counts.clamp(min=1, max=n) if cap else counts.clamp(min=1)


def select_authors(x: torch.Tensor, retain_ratio: float, channel_ratio: float, temperature: float) -> Selection:
    """VidCom2 as ``vidcom2_compression`` of the authors' repository runs it."""
    t, n, _ = x.shape
    video, frame = published_similarities(x, channel_ratio, at_least_one=False)
    counts = published_counts(video, retain_ratio, temperature, cap=False)
    mask = topk_rows(video + frame, counts, largest=False, sorted=False)
    k = int(counts.sum())
    return make_selection(mask_to_index(mask, k), counts, t, n, curvature=-video.float().mean(dim=1))


def vllm_target(frames: int, tokens: int, q: float) -> int:
    """vLLM's VidCom2 count at pruning rate q: ``max(T, min(int(T*N*(1 - q)), T*N))``."""
    total = frames * tokens
    return min(max(frames, min(int(total * (1.0 - q)), total)), total)


def select_vllm(x: torch.Tensor, retain_ratio: float, channel_ratio: float, temperature: float) -> Selection:
    """VidCom2 as vLLM's ``compute_retention_mask`` runs it at ``q = 1 - retain_ratio``: the authors'
    per-frame counts (capped at N), then a global reconcile to vLLM's exact count by score."""
    t, n, _ = x.shape
    q = 1.0 - retain_ratio
    video, frame = published_similarities(x, channel_ratio, at_least_one=True)
    sim = (video + frame).reshape(-1)
    counts = published_counts(video, 1.0 - q, temperature, cap=True)
    mask = topk_rows((video + frame), counts, largest=False, sorted=False).reshape(-1)
    target, current = vllm_target(t, n, q), int(mask.sum())
    if current > target:  # drop the most redundant kept tokens
        kept = mask.nonzero().flatten()
        worst = torch.topk(sim[kept], k=current - target, largest=True, sorted=False).indices
        mask[kept[worst]] = False
    elif current < target:  # add the least redundant dropped ones
        free = (~mask).nonzero().flatten()
        best = torch.topk(sim[free], k=min(target - current, free.numel()), largest=False, sorted=False).indices
        mask[free[best]] = True
    k = int(mask.sum())
    keep = mask_to_index(mask, k)
    return make_selection(keep, frame_counts(keep, t, n), t, n, curvature=-video.float().mean(dim=1))
