"""Which cached video tokens leave when a stream's cache is full (tensors only).

A stream under a hard cap of ``M`` video tokens must drop old tokens to admit new ones. The rule
keeps V-CAST's own allocation, applied across time:

1. **Inside a frame, reverse dual-anchor order.** A token's key falls with its rank ``k`` in its
   frame (the dual-anchor order the causal rule kept it by), so a frame always holds a prefix
   ``0 .. k_t - 1`` of its ranking: exactly the tokens V-CAST would keep for it at a smaller budget.
2. **Across frames, curvature weight times recency.** Keys are ``w_f / (k + 1)`` with
   ``w_f = exp(c_f / tau) * 2 ** (f / H)``: the frame's budget weight in V-CAST's softmax times a
   recency factor of half-life ``H`` frames. Keeping the ``M`` largest keys is the D'Hondt (highest
   averages) apportionment of the ``M`` slots in proportion to ``w_f``: no token could move from one
   frame to another and raise the smaller key. Because the recency factor is ``2 ** (f / H)`` (and
   not ``2 ** (-age / H)``), keys never change as the stream advances: their order is fixed once a
   token arrives, so a token evicted now would never have been kept later (no thrashing, one sort per
   eviction, nothing to recompute). Old frames thin out geometrically instead of falling off a window.
3. **A thin uniform skeleton of the past.** The best token of every frame whose index is a multiple
   of a power-of-two stride ``s`` is never evicted, ``s`` the smallest power of two that fits the
   frames seen into ``S`` slots. Strides nest, so when ``s`` doubles half of the skeleton frames lose
   their protection and the others keep it: every stretch of ``s`` frames of the whole stream keeps at
   least one token, whatever its curvature.

Every token costs one cache slot, and a frame's first token also the text its processor writes around
the frame (Qwen3-VL's ``<t seconds>``, Gemma 4's ``MM:SS``, ...): the cap bounds every slot the video
holds. The survivors are the longest prefix of the key order whose costs fit (:func:`survivors`).

Keys are float64 and kept in log form (``log w_f - log(k + 1)``), so ``f`` can run to ~1e12 frames.
"""

from __future__ import annotations

import math

import torch

# Recency factor per frame when no half-life is given: none (pure curvature apportionment).
NO_RECENCY = math.inf


def eviction_keys(log_weight: torch.Tensor, rank: torch.Tensor, frame: torch.Tensor,
                  half_life: float = NO_RECENCY) -> torch.Tensor:
    """Log keys ``FloatTensor[M]`` (float64) of ``M`` candidate tokens: larger keys stay longer.

    Args:
        log_weight: ``FloatTensor[M]``, ``c_f / tau`` of each token's frame.
        rank: ``LongTensor[M]``, the token's rank in its frame (0 = best).
        frame: ``LongTensor[M]``, the frame's index in the stream.
        half_life: frames over which a frame's weight halves relative to newer frames (``inf``: none).
    """
    key = log_weight.double() - torch.log1p(rank.double())
    if math.isfinite(half_life):
        key = key + frame.double() * (math.log(2.0) / half_life)
    return key


def skeleton_stride(frames_seen: int, slots: int) -> int:
    """The smallest power of two ``s`` with ``ceil(frames_seen / s) <= slots`` (0 when ``slots < 1``)."""
    if slots < 1:
        return 0
    s = 1
    while -(-frames_seen // s) > slots:
        s *= 2
    return s


def skeleton_mask(frame: torch.Tensor, rank: torch.Tensor, stride: int) -> torch.Tensor:
    """``BoolTensor[M]``: the protected tokens, rank 0 of frames with ``frame % stride == 0``."""
    if stride < 1:
        return torch.zeros_like(rank, dtype=torch.bool)
    return (rank == 0) & (frame % stride == 0)


def survivors(keys: torch.Tensor, protected: torch.Tensor, capacity: int,
              cost: torch.Tensor | None = None) -> torch.Tensor:
    """``BoolTensor[M]``: the tokens that stay, protected ones first, then by descending key (ties keep
    the earlier candidate), as long as their costs sum to at most ``capacity``.

    Args:
        cost: ``LongTensor[M]``, the cache slots each token takes (None: one each, so ``min(M, capacity)``
            tokens stay). A frame's first token carries its frame's text too (the timestamp a processor
            writes around each frame), so that text leaves with the frame's last token.

    The kept tokens are the longest prefix of that order that fits: the cut only moves to larger keys
    as candidates arrive, so a token evicted now would never have been kept later.

    Raises:
        ValueError: the protected tokens alone cost more than ``capacity``.
    """
    m = keys.shape[0]
    if cost is None:
        if m <= capacity:
            return torch.ones(m, dtype=torch.bool, device=keys.device)
        cost = torch.ones(m, dtype=torch.long, device=keys.device)
    protected_cost = int(cost[protected].sum())
    if protected_cost > capacity:
        raise ValueError(f"protected tokens costing {protected_cost} slots do not fit a capacity of {capacity}")
    ranked = torch.where(protected, torch.full_like(keys, math.inf), keys)
    order = torch.sort(ranked, descending=True, stable=True).indices
    fits = torch.cumsum(cost[order], 0) <= capacity
    keep = torch.zeros(m, dtype=torch.bool, device=keys.device)
    keep[order[fits]] = True
    return keep
