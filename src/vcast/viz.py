"""A picture of what a pruning method kept (matplotlib, Agg backend; no display needed).

:func:`plot_selection` draws, top, a grid of sampled frames with every dropped token cell dimmed and
every kept cell clear, and below it the per-frame curvature curve and the per-frame token budget
(bars, with the uniform budget as a dashed line). :func:`pixel_selection` produces a selection
without any model, from the coverage benchmark's pixel token features.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vcast.core.selection import Selection
from vcast.errors import InputError

__all__ = ["default_grid", "pixel_selection", "plot_selection"]

DIM_ALPHA = 0.72  # opacity of the dark veil over dropped cells
KEPT_EDGE = "#ffd23f"  # outline colour of kept cells


def default_grid(height: int, width: int, cell: int = 32, max_side: int = 32) -> tuple[int, int]:
    """Token grid ``(h, w)`` for a frame, one token per ``cell`` pixels (Qwen-VL: 16 px patches
    merged 2x2 = 32 px), at least 1 and at most ``max_side`` per side."""
    return (int(min(max(1, round(height / cell)), max_side)), int(min(max(1, round(width / cell)), max_side)))


def pixel_selection(frames: np.ndarray, retain_ratio: float = 0.25, method: str = "vcast",
                    grid: tuple[int, int] | None = None) -> tuple[Selection, tuple[int, int]]:
    """Select tokens of a video with no model: pixel token features (``vcast.bench.features``).

    Args:
        frames: ``uint8[T, H, W, 3]``.
        retain_ratio: fraction of tokens to keep, in (0, 1].
        method: a registered method name (``vcast methods``).
        grid: token cells ``(h, w)`` per frame; default :func:`default_grid`.

    Returns:
        ``(selection, grid)``; ``selection`` indexes a ``[T, h*w]`` token grid.
    """
    from vcast.bench.features import pixel_token_features
    from vcast.methods import get_method, make_config
    from vcast.methods.grid import config_with_grid

    frames = np.asarray(frames)
    if frames.ndim != 4:
        raise InputError(f"frames must be uint8 [T, H, W, 3], got shape {frames.shape}")
    grid = grid or default_grid(frames.shape[1], frames.shape[2])
    features = pixel_token_features(frames, grid=grid)
    config = config_with_grid(make_config(method, retain_ratio=retain_ratio), grid)  # grid-aware methods
    return get_method(method).run([features], config)[0], grid


def _shown(budget: np.ndarray, max_shown: int) -> np.ndarray:
    """Frames for the picture: the quarter with the largest budgets plus evenly spaced ones."""
    t = budget.shape[0]
    if t <= max_shown:
        return np.arange(t)
    top = np.argsort(-budget, kind="stable")[: max_shown // 4]
    even = np.floor(np.linspace(0, t - 1, max_shown - top.size) + 0.5).astype(int)
    return np.unique(np.concatenate([top, even]))


def plot_selection(frames: np.ndarray, selection: Selection, grid: tuple[int, int], out: str | os.PathLike,
                   *, labels: Sequence[str] | None = None, title: str | None = None,
                   max_shown: int = 16, columns: int = 8, dpi: int = 110) -> Path:
    """Write a PNG of the kept tokens, the curvature and the per-frame budget.

    Args:
        frames: ``uint8[T, H, W, 3]``, one picture per token time step of ``selection`` (for a model
            with temporal patches of 2 frames, pass the first frame of each pair).
        selection: its ``keep_mask()`` is ``[T, h*w]`` over the token grid.
        grid: ``(h, w)`` token cells per frame, ``h * w == selection.tokens_per_frame``; cells
            split the frame evenly (the processor's resize keeps the aspect ratio up to rounding).
        out: the PNG path (parent folders are created).
        labels: one caption per time step (e.g. ``"t=1.5s"``); default ``"#i"``.
        title: figure title; default a summary line.
        max_shown: at most this many frames in the grid (the quarter with the largest budgets, the
            rest spread evenly); the curves show all.
        columns: frames per row of the grid.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.
    """
    from matplotlib.figure import Figure
    from matplotlib.gridspec import GridSpec

    frames = np.asarray(frames)
    t, n = selection.num_frames, selection.tokens_per_frame
    h, w = int(grid[0]), int(grid[1])
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if frames.shape[0] != t:
        raise InputError(f"{frames.shape[0]} frames given for a selection over {t} time steps; pass one per step")
    if h * w != n:
        raise InputError(f"grid {h}x{w} has {h * w} cells but the selection has {n} tokens per frame")
    if labels is not None and len(labels) != t:
        raise InputError(f"{len(labels)} labels for {t} frames")
    labels = list(labels) if labels is not None else [f"#{i}" for i in range(t)]
    keep = selection.keep_mask().cpu().numpy().reshape(t, h, w)
    budget = selection.frame_budget.cpu().numpy()
    curvature = selection.curvature.float().cpu().numpy()
    shown = _shown(budget, max(1, max_shown))
    cols = min(columns, len(shown))
    rows = -(-len(shown) // cols)
    fh, fw = frames.shape[1], frames.shape[2]
    cell_w = 2.0
    cell_h = cell_w * fh / fw + 0.3
    fig = Figure(figsize=(cell_w * cols + 0.6, cell_h * rows + 3.6), dpi=dpi)
    outer = GridSpec(2, 1, figure=fig, height_ratios=[cell_h * rows, 3.2], hspace=0.12,
                     left=0.07, right=0.98, top=1 - 0.45 / (cell_h * rows + 3.6), bottom=0.07)
    top = outer[0].subgridspec(rows, cols, hspace=0.22, wspace=0.05)
    bottom = outer[1].subgridspec(2, 1, hspace=0.12)
    veil = np.zeros((h, w, 4), dtype=np.float32)
    for k, i in enumerate(shown):
        ax = fig.add_subplot(top[k // cols, k % cols])
        ax.imshow(frames[i], extent=(0, fw, fh, 0), interpolation="bilinear")
        veil[..., 3] = np.where(keep[i], 0.0, DIM_ALPHA)
        ax.imshow(veil, extent=(0, fw, fh, 0), interpolation="nearest")
        ax.add_collection(_outlines(keep[i], fw / w, fh / h))
        ax.set_title(f"{labels[i]}  kept {int(budget[i])}/{n}", fontsize=7.5, pad=2)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(0, fw)
        ax.set_ylim(fh, 0)
    steps = np.arange(t)
    ax_c = fig.add_subplot(bottom[0])
    ax_c.plot(steps, curvature, color="#c0392b", marker="o", markersize=3, linewidth=1.4)
    ax_c.set_ylabel("curvature", fontsize=8)
    if not np.any(curvature):
        ax_c.text(0.5, 0.5, "this method reports no curvature", transform=ax_c.transAxes, ha="center",
                  va="center", fontsize=9, color="#777777")
    ax_c.tick_params(labelsize=7, labelbottom=False)
    ax_c.grid(alpha=0.3)
    ax_b = fig.add_subplot(bottom[1], sharex=ax_c)
    colours = np.where(np.isin(steps, shown), "#2471a3", "#85c1e9")
    ax_b.bar(steps, budget, color=colours, width=0.8)
    ax_b.axhline(selection.num_kept / t, color="#555555", linestyle="--", linewidth=1,
                 label=f"uniform {selection.num_kept / t:.1f}")
    ax_b.set_ylabel("kept tokens", fontsize=8)
    ax_b.set_xlabel("time step (frame, or temporal patch of frames); dark bars: shown above", fontsize=8)
    ax_b.set_ylim(0, max(n, 1) * 1.05)
    ax_b.tick_params(labelsize=7)
    ax_b.legend(fontsize=7, loc="upper right", frameon=False)
    ax_b.grid(alpha=0.3, axis="y")
    ax_c.set_xlim(-0.6, t - 0.4)
    if t <= 40:
        ax_b.set_xticks(steps)
    fig.suptitle(title or (f"kept {selection.num_kept}/{t * n} tokens ({selection.retain_ratio:.0%}) "
                           f"over {t} frames, {h}x{w} tokens per frame"), fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def _outlines(keep: np.ndarray, cw: float, ch: float):
    """One PatchCollection outlining the kept cells of a ``bool[h, w]`` mask."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    ys, xs = np.nonzero(keep)
    rects = [Rectangle((x * cw, y * ch), cw, ch) for y, x in zip(ys.tolist(), xs.tolist())]
    return PatchCollection(rects, facecolor="none", edgecolor=KEPT_EDGE, linewidth=0.5, alpha=0.8)
