"""A per-frame Python-loop implementation of the V-CAST specification.

Written independently of the vectorised :mod:`vcast.core.select`, in the shape of the published
code (a loop over frames with ``.item()`` calls and per-frame top-k). Tests check the vectorised
core against it on many shapes, and ``benchmarks/bench_select.py`` times both. Not for production.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from vcast.config import VCastConfig
from vcast.core.budget import total_budget
from vcast.core.curvature import EPS
from vcast.core.select import as_video_list, resolve_config
from vcast.core.selection import Selection
from vcast.errors import InputError


def loop_select_tokens(features: torch.Tensor, config: VCastConfig | None = None, **overrides: Any) -> Selection:
    """A straightforward per-frame Python-loop implementation of the same specification.

    This is the shape of the published code (a loop over frames with ``topk`` and ``.item()``
    calls). It is kept as the reference that tests and ``benchmarks/bench_select.py`` compare the
    vectorised :func:`select_tokens` against; do not use it in production.

    Args:
        features: ``Tensor[T, N, D]``.
    """
    cfg = resolve_config(config, overrides)
    (x,), _ = as_video_list(features)
    x = x.float()
    t_frames, n, _ = x.shape
    reps = [F.normalize(x[t].mean(0), dim=0, eps=EPS) for t in range(t_frames)]
    if cfg.curvature != "angle" or cfg.is_auto or cfg.token_curvature_weight > 0:
        raise InputError("loop_select_tokens implements the published method only (angle, fixed ratio)")
    curv = []
    for t in range(t_frames):
        if t == 0 or t == t_frames - 1:
            curv.append(1.0)
            continue
        v_in, v_out = reps[t] - reps[t - 1], reps[t + 1] - reps[t]
        curv.append(1.0 - F.cosine_similarity(v_in, v_out, dim=0, eps=EPS).item())
    c = torch.tensor(curv, dtype=torch.float32)
    w = torch.softmax(c / cfg.temperature, dim=0)
    k_total = total_budget(t_frames, n, cfg.retain_ratio, cfg.min_tokens_per_frame)
    min_k = min(cfg.min_tokens_per_frame, n)
    rest = k_total - t_frames * min_k
    raw = [w[t].item() * rest for t in range(t_frames)]
    k = [min(min_k + math.floor(v), n) for v in raw]
    frac = [v - math.floor(v) for v in raw]
    while sum(k) < k_total:
        for t in sorted(range(t_frames), key=lambda i: (-frac[i], i)):
            if sum(k) == k_total:
                break
            if k[t] < n:
                k[t] += 1
    kept = []
    for t in range(t_frames):
        norms = x[t].norm(dim=-1)
        cos = F.cosine_similarity(x[t], reps[t].unsqueeze(0), dim=-1, eps=EPS)
        s = (1 - cos) + (norms - norms.min()) / (norms.max() - norms.min() + 1e-6)
        if k[t] > 0:
            top = torch.sort(s, descending=True, stable=True).indices[: k[t]]
            kept.append(torch.sort(top).values + t * n)
    keep = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long)
    return Selection(keep, torch.tensor(k), c, t_frames, n)
