"""Pool: 2x2 average pooling on the frame grid, generalised to any retain ratio at exact K.

Reference: the "AvgPool 2x2" spatial-selection baseline of V-CAST (Lin et al., "V-CAST: Video
Curvature-Aware Spatio-Temporal Pruning for Efficient Video Large Language Models", arXiv
2603.27650) and the "Pool" baseline of UniPruneBench (arXiv 2511.02650).

What it does: K = ``total_budget(T, N, retain_ratio)`` is split equally over frames (V-CAST's
largest-remainder split on equal weights). Each frame's ``h x w`` grid is walked in Morton
(Z-curve) order and cut into ``k_t`` contiguous runs of ``floor``/``ceil(N / k_t)`` tokens (run of
Morton position p: ``floor(p * k_t / N)``); each run is replaced by the mean of its tokens. When h
and w are even and ``k_t = N / 4`` (ratio 0.25) the runs are exactly the 2x2 blocks, so this *is*
2x2 average pooling; at ``k_t = N / 16`` with h, w divisible by 4 it is 4x4 pooling; at ratio 1.0
every run is one token and the output equals the input. At other ratios the runs are unions or
halves of blocks along the Z-curve (still spatially compact).

Positions: a merged token sits at the original grid position of the run member with the smallest
flat index (the top-most row, then the left-most cell; the top-left cell of a 2x2 block).
``merged_features`` holds the means, in the order of ``keep_index``.

Faithfulness: at ratio 0.25 on even grids, identical to 2x2 average pooling. Other ratios, and
odd grids (where 2x2 windows cannot tile the frame), are our exact-K generalisation. Needs the
frame grid: ``grid_hw`` (see :mod:`vcast.methods.grid`; default square). Vectorised over frames;
the only Python loop runs over the members of a run (``ceil(N / k)`` steps, 4 at ratio 0.25),
summing in a fixed order so results are deterministic on CPU and CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from vcast.config import MethodConfig
from vcast.core.layout import check_finite
from vcast.core.selection import Selection
from vcast.methods._common import (
    equal_budget,
    equal_split,
    kept_total,
    make_selection,
    mask_to_index,
    one_video,
)
from vcast.methods.grid import check_grid_hw, resolve_grid
from vcast.methods.registry import MethodSpec, register_method


@dataclass(frozen=True)
class PoolConfig(MethodConfig):
    """Pool options.

    Attributes:
        grid_hw: ``(h, w)`` of each frame's token grid with ``h * w == N``, or None for a square grid.
    """

    method: ClassVar[str] = "pool"

    grid_hw: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "grid_hw", check_grid_hw(self.grid_hw))


def morton_order(h: int, w: int, device: torch.device) -> torch.Tensor:
    """``LongTensor[h*w]``: the raster index of the p-th cell along the Morton (Z) curve."""
    y = torch.arange(h, device=device).repeat_interleave(w)
    x = torch.arange(w, device=device).repeat(h)
    code = torch.zeros_like(y)
    for b in range(max(h, w).bit_length()):
        code |= ((y >> b) & 1) << (2 * b + 1) | ((x >> b) & 1) << (2 * b)
    return torch.argsort(code)


def select_pool(features: torch.Tensor, config: PoolConfig) -> Selection:
    """Average-pool each frame into ``k_t`` Morton runs (2x2 blocks at ratio 0.25).

    Args:
        features: ``Tensor[T, N, D]`` with ``N == h * w``.
        config: a :class:`PoolConfig`.

    Returns:
        A :class:`Selection` with ``merged_features[K, D]`` (input dtype).
    """
    x = one_video(features)
    t, n, d = x.shape
    h, w = resolve_grid(config.grid_hw, n)
    dev = x.device
    k = kept_total(t, n, config.retain_ratio)
    budget = equal_budget(x, k)  # [T]
    split = equal_split(k, t)
    k_max, run_max = max(split), -(-n // min(split))

    perm = morton_order(h, w, dev)
    # Runs, frame-major: run i of frame t (i < k_t) covers Morton positions [ceil(iN/k), ceil((i+1)N/k)).
    i = torch.arange(k_max, device=dev)
    kt = budget.unsqueeze(1)
    slots = mask_to_index(i < kt, k)  # the K real runs among T * k_max slots
    first = torch.div(i * n + kt - 1, kt, rounding_mode="floor")  # [T, k_max]
    after = torch.div((i + 1) * n + kt - 1, kt, rounding_mode="floor")
    start = first.reshape(-1)[slots]
    size = (after - first).reshape(-1)[slots]
    base = torch.div(slots, k_max, rounding_mode="floor") * n  # flat offset of the run's frame

    # Anchor (smallest member index) from indices alone, then output order = sorted anchors.
    anchor = perm[start]
    for j in range(1, run_max):
        anchor = torch.where(j < size, torch.minimum(anchor, perm[(start + j).clamp(max=n - 1)]), anchor)
    keep, order = torch.sort(base + anchor)
    start, size, base = start[order], size[order], base[order]

    # Sum the members in a fixed order (deterministic on every device), straight into output order.
    flat = x.reshape(t * n, d)
    out = flat.index_select(0, base + perm[start]).float()
    buf = torch.empty(k, d, dtype=x.dtype, device=dev) if run_max > 1 else None
    full = n // k_max  # every run has at least this many members
    for j in range(1, run_max):  # members of a run (4 at ratio 0.25), not frames
        torch.index_select(flat, 0, base + perm[(start + j).clamp(max=n - 1)], out=buf)
        if j >= full:
            buf.mul_((j < size).unsqueeze(1).to(buf.dtype))  # runs with fewer members add 0
        out.add_(buf)
    out.div_(size.unsqueeze(1))
    check_finite(out.sum(), "pooled features")
    merged = out.to(x.dtype)
    return make_selection(keep, budget, t, n, merged_features=merged)


register_method(MethodSpec(
    name="pool",
    config_cls=PoolConfig,
    select=select_pool,
    merges=True,
    summary="Pool: 2x2 average pooling on the frame grid (Morton runs at other ratios; exact K)",
    keeps_every_frame=lambda cfg: True,
    every_frame_note="yes: K split equally over frames, at least one run each",
))
