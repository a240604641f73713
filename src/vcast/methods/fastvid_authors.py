"""FastVID's ``reproduce="authors"`` mode: the official Qwen2.5-VL path of ``LunarShen/FastVID``
(``fastvid_qwen25vl/.../qwenvlutils/modeling_qwen2_5_vl.py``, the pruning block of the causal-LM
``forward``, read at a40a109), reproduced on the features. :mod:`vcast.methods.fastvid` lists where it
differs from vcast's default.

The official block is a sequence of host decisions (segments, per-frame counts) and per-frame
tensor steps; this module keeps that structure (Python loops over segments and anchor frames, as
published) and evaluates each tensor step with the same operations in the features' dtype.
"""

from __future__ import annotations

import torch

from vcast.core.authors import topk_rows
from vcast.core.selection import Selection
from vcast.errors import ReproduceError
from vcast.methods._common import make_selection

# Neighbours of the official DPC-kNN density (hard-coded there).
OFFICIAL_KNN = 4
# Scale of the official random density tie-breaker.
NOISE = 1e-6


def _sizes(cuts: list[int], length: int) -> list[int]:
    """Segment lengths when the sequence is cut after each (sorted) index in ``cuts``."""
    if not cuts:
        return [length]
    return [cuts[0] + 1] + [b - a for a, b in zip(cuts, cuts[1:])] + [length - cuts[-1] - 1]


def _spread(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` near-equal shares, the first ``total % parts`` one larger (Python's
    floor division and modulo, as published, also for a negative total)."""
    base, extra = total // parts, total % parts
    return [base + (1 if i < extra else 0) for i in range(parts)]


def segment_counts(g: torch.Tensor, frame_keep: int, tokens: int, cfg) -> tuple[list[int], list[int]]:
    """Salient and context counts of each frame of one segment, as the official code sets them.

    Args:
        g: ``Tensor[L, D]``, the segment's normalised frame embeddings.
        frame_keep: ``int(N * retain_ratio)``.
        tokens: N.
        cfg: the :class:`~vcast.methods.fastvid.FastVIDConfig`.
    """
    length = g.shape[0]
    seg_keep = frame_keep * length
    seg_ctx = max(int(seg_keep * cfg.stprune_d), 1)
    seg_sal = seg_keep - seg_ctx
    if length == 1:
        return [seg_sal], [seg_ctx]
    near = ((g[:-1] * g[1:]).sum(dim=1) < cfg.dyseg_ignore).nonzero().flatten().tolist()
    runs = _sizes(near, length)  # runs of near-duplicate frames; each is represented by its last frame
    sal_run = _spread(seg_sal, len(runs))
    groups = _spread(seg_ctx, (len(runs) + cfg.dtm_p - 1) // cfg.dtm_p)
    ctx_run, group = [], 0
    for i in range(len(runs)):  # every dtm_p-th run gets a context group ...
        if i % cfg.dtm_p == 0:
            ctx_run.append(min(groups[group], tokens // 2))
            group += 1
        else:
            ctx_run.append(0)
    ctx_run.reverse()  # ... counted from the end of the segment
    salient, context = [], []
    for size, sal, ctx in zip(runs, sal_run, ctx_run):
        salient += [0] * (size - 1)
        context += [0] * (size - 1)
        context.append(min(ctx, tokens // 2))
        salient.append(min(sal, tokens - context[-1]))
    return salient, context


def _peaks(frame: torch.Tensor, count: int, gen: torch.Generator) -> torch.Tensor:
    """The official DPC-kNN context choice on one frame's candidate tokens ``[M, D]``: indices into
    them, ascending."""
    m, d = frame.shape
    if m < OFFICIAL_KNN:
        raise ReproduceError(f"FastVID's official density step needs at least {OFFICIAL_KNN} candidate tokens in "
                             f"an anchor frame (its kNN top-k), got {m}; use reproduce=None")
    f32 = frame.float().unsqueeze(0)
    dist = torch.cdist(f32, f32) / (d**0.5)
    near = torch.topk(dist, k=OFFICIAL_KNN, dim=-1, largest=False).values
    density = (-(near**2).mean(dim=-1)).exp()
    density = density + torch.rand(density.shape, generator=gen).to(density.device) * NOISE
    denser = (density[:, None, :] > density[:, :, None]).to(frame.dtype)
    far = dist.flatten(1).max(dim=-1).values[:, None, None]
    delta = (dist * denser + far * (1 - denser)).min(dim=-1).values
    return torch.topk(delta * density, k=count, dim=-1).indices[0].sort().values


def _merge(tokens: torch.Tensor, unit: torch.Tensor, salient: torch.Tensor, context: torch.Tensor,
           beta: float) -> torch.Tensor:
    """The official DTM for one anchor frame's context tokens: every segment token (``tokens``,
    ``unit = tokens / ||tokens||``) that is neither salient nor one of these context tokens joins
    its most similar context token."""
    n = tokens.shape[0]
    retained = torch.zeros(n, dtype=torch.bool, device=tokens.device)
    retained[salient] = True
    retained[context] = True
    members = (~retained).nonzero().flatten()
    sim = unit[members] @ unit[context].T
    assign = torch.zeros(members.numel(), context.numel(), dtype=tokens.dtype, device=tokens.device)
    assign.scatter_(1, sim.argmax(dim=1, keepdim=True), 1)
    count = assign.sum(dim=0).unsqueeze(-1)
    weight = (1 / (count + 1)).clamp(min=beta)
    mean = (assign.T @ tokens[members]) / count.clamp(min=1)
    return weight * tokens[context] + (1 - weight) * mean


def select_fastvid_authors(x: torch.Tensor, config, importance: torch.Tensor) -> Selection:
    """FastVID as the official Qwen2.5-VL code selects and merges.

    Args:
        x: ``Tensor[T, N, D]``.
        config: a :class:`~vcast.methods.fastvid.FastVIDConfig` with ``reproduce="authors"``.
        importance: ``Tensor[T, N]``, the salient score standing in for the ViT attention.
    """
    t, n, d = x.shape
    dev = x.device
    if t < config.dyseg_c:
        raise ReproduceError(f"FastVID's official DySeg cannot run on T={t} frames: it takes the dyseg_c - 1 = "
                             f"{config.dyseg_c - 1} lowest of the T - 1 transitions (top-k), so it needs T >= "
                             f"dyseg_c = {config.dyseg_c}; use reproduce=None or a smaller dyseg_c")
    g = x.mean(dim=1)
    g = g / g.norm(dim=1, keepdim=True)
    sim = (g[:-1] * g[1:]).sum(dim=1)
    lowest = torch.topk(sim, config.dyseg_c - 1, largest=False).indices
    cuts = torch.unique(torch.cat([lowest, (sim < config.dyseg_tau).nonzero().flatten()])).tolist()
    if not cuts:
        raise ReproduceError("FastVID's official DySeg needs at least one cut (dyseg_c >= 2, or a transition below "
                             "dyseg_tau); with none it indexes an empty tensor. Use reproduce=None")
    frame_keep = int(n * config.retain_ratio)
    gen = torch.Generator().manual_seed(config.seed)
    flat = x.reshape(t * n, d)
    keep_parts, value_parts, budget = [], [], []
    start = 0
    for length in _sizes(cuts, t):  # segments: inherent to the algorithm, as published
        sal_n, ctx_n = segment_counts(g[start:start + length], frame_keep, n, config)
        if max(sal_n) <= 0 or max(ctx_n) <= 0:
            raise ReproduceError(
                f"FastVID's official code fails on a {length}-frame segment that keeps no "
                f"{'salient' if max(sal_n) <= 0 else 'context'} token (it concatenates an empty list): "
                f"int(N * retain_ratio) = {frame_keep} is too small here; use reproduce=None")
        rows = importance[start:start + length]
        salient_mask = topk_rows(rows, [max(s, 0) for s in sal_n], largest=True, sorted=True)
        salient = salient_mask.reshape(-1).nonzero().flatten()  # into the segment
        contexts = []
        for f, c in enumerate(ctx_n):  # anchor frames of the segment (a few)
            if c > 0:
                free = (~salient_mask[f]).nonzero().flatten()
                picked = free[_peaks(x[start + f, free], c, gen)]
                contexts.append(picked + f * n)
        seg = flat[start * n:(start + length) * n]
        unit = seg / seg.norm(dim=-1, keepdim=True)
        values = [seg[salient]] + [_merge(seg, unit, salient, c, config.dtm_beta) for c in contexts]
        index = torch.cat([salient, *contexts])
        order = torch.argsort(index)
        keep_parts.append(index[order] + start * n)
        value_parts.append(torch.cat(values)[order])
        budget += [max(s, 0) + c for s, c in zip(sal_n, ctx_n)]
        start += length
    keep = torch.cat(keep_parts)
    curvature = torch.cat([torch.zeros(1, device=dev), 1.0 - sim.float()])
    return make_selection(keep, torch.tensor(budget, device=dev), t, n, curvature=curvature,
                          merged_features=torch.cat(value_parts).to(x.dtype))

