"""FastVID's two tensor kernels: DPC-kNN density peaks (context-token choice) and density-based
token merging (DTM). See :mod:`vcast.methods.fastvid` for the algorithm and its provenance."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vcast.core.curvature import EPS
from vcast.methods._common import topk_mask


def density_peaks(x: torch.Tensor, candidate: torch.Tensor, count: torch.Tensor, neighbours: int) -> torch.Tensor:
    """The ``count[a]`` DPC-kNN density peaks among the candidate tokens of each frame.

    Distances are Euclidean over ``sqrt(D)``; the density of a token is
    ``exp(-mean of its squared distances to its k nearest candidates)`` (itself included, as in
    FastVID); its peak score is density times the distance to the nearest denser candidate (the
    largest candidate distance of the frame if none). Density ties go to the lower index
    (FastVID adds random noise instead).

    Args:
        x: ``FloatTensor[A, N, D]`` tokens of A frames.
        candidate: ``BoolTensor[A, N]``, tokens that may be chosen (and count as neighbours).
        count: ``LongTensor[A]``, peaks per frame (at most the number of candidates).
        neighbours: k of the kNN density.

    Returns:
        ``BoolTensor[A, N]``, True at the chosen peaks.
    """
    _, n, d = x.shape
    sq = x.square().sum(dim=-1)  # A*N*D elements: the anchor frames only
    gram = torch.bmm(x, x.transpose(1, 2))
    dist = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * gram).clamp(min=0.0).sqrt() / math.sqrt(d)  # [A, N, N]
    inf = float("inf")
    knn = torch.topk(dist.masked_fill(~candidate.unsqueeze(1), inf), min(neighbours, n), dim=-1, largest=False)
    density = torch.exp(-(knn.values**2).mean(dim=-1))  # [A, N]
    idx = torch.arange(n, device=x.device)
    dens_j, dens_i = density.unsqueeze(1), density.unsqueeze(2)
    denser = (dens_j > dens_i) | ((dens_j == dens_i) & (idx.unsqueeze(0) < idx.unsqueeze(1)))
    denser &= candidate.unsqueeze(1)  # denser[a, i, j]: candidate j is denser than i
    pair = candidate.unsqueeze(2) & candidate.unsqueeze(1)
    far = dist.masked_fill(~pair, -inf).amax(dim=(1, 2), keepdim=True).clamp(min=0.0)
    delta = torch.where(denser, dist, far).amin(dim=-1)
    score = (delta * density).masked_fill(~candidate, -inf)
    return topk_mask(score, count)


def group_sum(src: torch.Tensor, group: torch.Tensor, num_groups: int, index_add: bool | None = None) -> torch.Tensor:
    """``FloatTensor[G, D]``: the sum of the rows of ``src[M, D]`` in each group.

    ``group[M]`` holds values in ``0..G``; rows with group G are ignored. Deterministic either way:
    ``index_add`` (default: on CPU, where ``index_add_`` adds rows sequentially) or a one-hot matrix
    product (elsewhere: CUDA's ``index_add_`` uses float atomics, whose order varies).
    """
    if src.device.type == "cpu" if index_add is None else index_add:
        out = torch.zeros(num_groups + 1, src.shape[1], dtype=src.dtype, device=src.device)
        return out.index_add_(0, group, src)[:num_groups]
    onehot = torch.zeros(num_groups + 1, src.shape[0], dtype=src.dtype, device=src.device)
    onehot.scatter_(0, group.unsqueeze(0), 1.0)
    return onehot[:num_groups] @ src


def merge_into_context(
    seg: torch.Tensor, ctx_idx: torch.Tensor, dropped: torch.Tensor, groups: list[int], beta: float
) -> torch.Tensor:
    """DTM: the merged context tokens of one segment.

    Each dropped token is assigned, within every anchor frame's group of context tokens, to the
    most similar one (cosine); a context token with ``c`` assigned tokens becomes
    ``a * x + (1 - a) * mean(assigned)``, ``a = max(1 / (c + 1), beta)`` (``x`` itself when c = 0).
    The similarity runs over the whole segment (kept tokens are then ignored) so that no copy of
    the dropped tokens is made.

    Args:
        seg: ``FloatTensor[L*N, D]``, the segment's tokens (a view).
        ctx_idx: ``LongTensor[C]``, indices into ``seg`` of the context tokens, grouped by anchor
            frame (frame-major).
        dropped: ``BoolTensor[L*N]``, the segment's dropped tokens.
        groups: host list, context tokens per anchor frame (sums to C).
        beta: minimum weight of a context token's own feature.

    Returns:
        ``FloatTensor[C, D]``.
    """
    dev = seg.device
    xa = seg.index_select(0, ctx_idx)
    num = xa.shape[0]
    # argmax_j cos(m, a_j) = argmax_j m . a_j / ||a_j||: the tokens need no normalising.
    sim = F.normalize(xa, dim=-1, eps=EPS) @ seg.T  # [C, L*N], rows times the token matrix
    sums = torch.zeros_like(xa)
    counts = torch.zeros(num, 1, dtype=xa.dtype, device=dev)
    ones = torch.ones(seg.shape[0], dtype=xa.dtype, device=dev)  # counts are exact in float
    start = 0
    for size in groups:  # anchor frames of the segment (a few)
        choice = sim[start : start + size].argmax(dim=0) + start  # [L*N]
        choice = torch.where(dropped, choice, torch.full_like(choice, num))  # kept tokens: ignored
        sums += group_sum(seg, choice, num)
        counts += torch.zeros(num + 1, dtype=xa.dtype, device=dev).index_add_(0, choice, ones)[:num].unsqueeze(1)
        start += size
    mean = sums / counts.clamp(min=1.0)
    alpha = (1.0 / (counts + 1.0)).clamp(min=beta)
    return alpha * xa + (1.0 - alpha) * mean
