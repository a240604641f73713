"""Token budgets: the total per video and its split over frames (largest remainder)."""

from __future__ import annotations

import torch

from vcast.core.layout import BatchLayout


def total_budget(frames: int, tokens: int, retain_ratio: float, min_tokens_per_frame: int = 1) -> int:
    """K for one video: ``round(T*N*r)`` clamped to ``[1, T*N]``, then at least ``T*min_k``.

    ``round`` is Python's (half to even), as in the published code.
    """
    total = frames * tokens
    k = min(max(round(total * retain_ratio), 1), total)
    return max(k, frames * min(min_tokens_per_frame, tokens))


def allocate_frames(
    weights: torch.Tensor, totals: torch.Tensor, layout: BatchLayout, min_tokens_per_frame: int
) -> torch.Tensor:
    """Split each video's budget over its frames, vectorised over all frames of all videos.

    Every frame first gets ``min_k = min(min_tokens_per_frame, N)``. The rest ``R = K - T*min_k`` is
    split in float64: ``raw_t = w_t * R``, ``k_t = min(min_k + floor(raw_t), N)``. Missing tokens
    are then handed out one per frame in order of decreasing ``raw_t - floor(raw_t)`` (ties to the
    lower frame), skipping full frames, in repeated passes until the sum is K. The passes are solved
    in closed form (no data-dependent loop, no host sync): pass p can serve the frames whose spare
    capacity exceeds p, so the number of complete passes is the largest P with
    ``sum_t min(cap_t, P) <= deficit``, and the remainder goes to frames with ``cap_t > P`` by rank.

    Args:
        weights: ``FloatTensor[F]``, per-frame weights summing to 1 within each video.
        totals: ``LongTensor[B]``, K per video (``T*min_k <= K <= T*N``).
        layout: the batch layout.
        min_tokens_per_frame: the floor per frame.

    Returns:
        ``LongTensor[F]``, tokens kept per frame, summing to K within each video.
    """
    fv = layout.frame_video
    n = layout.frame_tokens
    min_k = n.clamp(max=min_tokens_per_frame)
    rest = totals - layout.segment_sum(min_k)
    raw = weights.double() * rest.double()[fv]
    floor = torch.floor(raw)
    k = torch.minimum(min_k + floor.long(), n)
    cap = n - k
    deficit = totals - layout.segment_sum(k)

    max_n = max(layout.tokens)
    passes = torch.arange(max_n + 1, device=k.device)
    served = layout.segment_sum(torch.minimum(cap[:, None], passes[None, :]))  # [B, max_n + 1]
    full = (served <= deficit[:, None]).sum(dim=1) - 1  # complete passes per video
    remainder = deficit - served.gather(1, full[:, None]).squeeze(1)
    p = full[fv]
    eligible = cap > p
    frac = torch.where(eligible, raw - floor, torch.full_like(raw, -1.0))
    rank = layout.rank_in_video(frac)
    return k + torch.minimum(cap, p) + (eligible & (rank < remainder[fv])).long()
