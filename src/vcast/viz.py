"""A picture of what a pruning method kept (matplotlib, Agg backend; no display needed).

:func:`plot_selection` draws, top, a grid of sampled frames with every kept token cell in full colour
(outlined) and every dropped cell washed out to grey and hatched, so the two differ on dark and
bright scenes alike (dark frames are brightened for display, and the caption says so); below it
the per-frame curvature curve with a line saying what it measures, and the per-frame token budget
(bars, with the uniform budget as a dashed line). :func:`pixel_selection` produces a selection
without any model, from the coverage benchmark's pixel token features.

Budgets that jump between neighbouring frames of a steady shot come from the paper's angle
curvature, not from drawing: it is ``1 - cos`` of consecutive steps of the frame-mean path, blind
to how long the steps are, so where the path is nearly straight (steady motion) its turns are
noise (sensor noise, video compression alternating frame quality) and score as high as real
events (1 on average for random turns). :func:`curvature_note` detects that case (median
curvature of inner frames >= 0.5) and the picture says so; ``vcast-robust``, which scores the size
of a deviation against its neighbourhood, keeps such clips near uniform.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vcast.core.selection import Selection
from vcast.errors import InputError

__all__ = ["PIXEL_GRID_MAX_SIDE", "curvature_note", "default_grid", "pixel_selection", "plot_selection"]

PIXEL_GRID_CELL = 32  # pixels per pixel-feature token (Qwen-VL: 16 px patches merged 2x2)
PIXEL_GRID_MAX_TOKENS = 32  # pixel-feature tokens per side at most
PIXEL_GRID_MAX_SIDE = PIXEL_GRID_CELL * PIXEL_GRID_MAX_TOKENS  # larger frames add nothing to the grid
WASH = 0.62  # how far dropped cells are washed toward WASH_GREY (0: untouched, 1: flat grey)
WASH_GREY = 0.55
KEPT_EDGE = "#ffd23f"  # outline colour of kept cells
DROP_HATCH = "#3a3a3a"  # hatching over dropped cells
DARK_LUMA = 0.35  # frames whose 99th-percentile luminance is below this are brightened for display
NOISY_CURVATURE = 0.5  # median inner-frame angle curvature at which turns are mostly noise
CURVATURE_HELP = ("curvature: how sharply the path of frame-mean tokens turns at each step (1 - cos of the steps "
                  "in and out: 0 straight on, 1 a right angle, 2 a reversal; vcast-robust: how far the frame "
                  "stands out from its neighbours). V-CAST gives high-curvature steps more tokens.")


def default_grid(height: int, width: int, cell: int = PIXEL_GRID_CELL,
                 max_side: int = PIXEL_GRID_MAX_TOKENS) -> tuple[int, int]:
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


def curvature_note(selection: Selection) -> str | None:
    """A warning for the picture when the curvature is mostly noise (see the module docstring), else None."""
    c = selection.curvature.float().cpu().numpy()
    if c.size < 5 or not np.any(c):
        return None
    inner = float(np.median(c[1:-1]))
    if not NOISY_CURVATURE <= inner <= 2 - NOISY_CURVATURE:
        return None
    return (f"median curvature {inner:.2f}: the frame path turns about as much as random steps would (1.0); on a "
            "steady shot that is noise (e.g. compression), not content, and vcast-robust keeps such clips near uniform")


def _display(frames: np.ndarray) -> tuple[np.ndarray, bool]:
    """``float[T, H, W, 3]`` in [0, 1] for drawing; dark clips are brightened (one gain for all frames)."""
    img = frames.astype(np.float32) / 255.0
    luma = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    top = float(np.percentile(luma, 99)) if luma.size else 1.0
    if top >= DARK_LUMA:
        return img, False
    return np.clip(img * (0.85 / max(top, 1e-3)), 0.0, 1.0), True


def _thumbnails(frames: np.ndarray, max_width: int) -> np.ndarray:
    """``frames`` box-averaged by an integer factor to at most ``max_width`` wide (drawing only:
    a frame shown 2 inches wide needs no more), ``uint8[T, H', W', 3]``."""
    k = frames.shape[2] // max_width
    if k < 2:
        return frames
    t, h, w, _ = frames.shape
    h, w = h // k * k, w // k * k
    out = frames[:, :h, :w].reshape(t, h // k, k, w // k, k, 3).mean(axis=(2, 4), dtype=np.float32)
    return np.round(out).astype(np.uint8)


def _composite(img: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """One frame ``float[H, W, 3]`` with the cells of ``keep`` (``bool[h, w]``) in colour and the
    others washed toward grey (their luminance kept faintly, so the scene stays readable)."""
    fh, fw = img.shape[:2]
    h, w = keep.shape
    rows = np.minimum((np.arange(fh) * h) // fh, h - 1)
    cols = np.minimum((np.arange(fw) * w) // fw, w - 1)
    kept = keep[rows[:, None], cols[None, :]][..., None]
    luma = (img @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    washed = (1 - WASH) * luma + WASH * WASH_GREY
    return np.where(kept, img, np.repeat(washed, 3, axis=-1))


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
    import textwrap

    from matplotlib.figure import Figure
    from matplotlib.gridspec import GridSpec
    from matplotlib.patches import Patch

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
    pictures, brightened = _display(_thumbnails(frames[shown], max_width=int(4 * dpi)))
    cols = min(columns, len(shown))
    rows = -(-len(shown) // cols)
    fh, fw = frames.shape[1], frames.shape[2]
    cell_w = 2.0
    cell_h = cell_w * fh / fw + 0.3
    width = max(cell_w * cols + 0.6, 8.0)  # a 1-frame clip still has room for the title and labels
    title = title or (f"kept {selection.num_kept}/{t * n} tokens ({selection.retain_ratio:.0%}) "
                      f"over {t} frame{'s' if t != 1 else ''}, {h}x{w} tokens per frame")
    title_lines = textwrap.wrap(title, width=int(width * 12))
    head = 0.3 + 0.2 * len(title_lines)
    bottom_h, foot = 3.9, 0.75
    height = cell_h * rows + bottom_h + head
    fig = Figure(figsize=(width, height), dpi=dpi)
    outer = GridSpec(2, 1, figure=fig, height_ratios=[cell_h * rows, bottom_h - foot], hspace=0.2,
                     left=0.08, right=0.98, top=1 - head / height, bottom=foot / height)
    top = outer[0].subgridspec(rows, cols, hspace=0.22, wspace=0.05)
    bottom = outer[1].subgridspec(2, 1, hspace=0.3)
    for k, i in enumerate(shown):
        ax = fig.add_subplot(top[k // cols, k % cols])
        ax.imshow(_composite(pictures[k], keep[i]), extent=(0, fw, fh, 0), interpolation="bilinear")
        ax.add_collection(_cells(~keep[i], fw / w, fh / h, hatch="////", edge=DROP_HATCH, lw=0.0))
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
    note = curvature_note(selection)
    if not np.any(curvature):
        ax_c.text(0.5, 0.5, "this method reports no curvature", transform=ax_c.transAxes, ha="center",
                  va="center", fontsize=9, color="#777777")
    ax_c.set_title("\n".join(textwrap.wrap(CURVATURE_HELP, width=int(width * 17))), fontsize=7, loc="left",
                   color="#444444", pad=3)
    if note:
        ax_c.text(0.0, -0.04, note, transform=ax_c.transAxes, ha="left", va="top", fontsize=7, color="#9a3412")
    ax_c.tick_params(labelsize=7, labelbottom=False)
    ax_c.grid(alpha=0.3)
    ax_b = fig.add_subplot(bottom[1], sharex=ax_c)
    pictured = np.isin(steps, shown)
    ax_b.bar(steps, budget, color=np.where(pictured, "#2471a3", "#85c1e9"), width=0.8)
    handles = [ax_b.axhline(selection.num_kept / t, color="#555555", linestyle="--", linewidth=1,
                            label=f"uniform {selection.num_kept / t:.1f}")]
    if not pictured.all():
        handles += [Patch(color="#2471a3", label="pictured above"), Patch(color="#85c1e9", label="not pictured")]
    ax_b.set_ylabel("kept tokens", fontsize=8)
    ax_b.set_xlabel("time step (a frame, or a temporal patch of frames)", fontsize=8)
    ax_b.set_ylim(0, max(n, 1) * 1.05)
    ax_b.tick_params(labelsize=7)
    ax_b.legend(handles=handles, fontsize=7, loc="upper right", frameon=False, ncols=len(handles))
    ax_b.grid(alpha=0.3, axis="y")
    ax_c.set_xlim(-0.6, t - 0.4)
    if t <= 40:
        ax_b.set_xticks(steps)
    fig.suptitle("\n".join(title_lines), fontsize=10, y=1 - 0.12 / height)
    key = ("frames: kept tokens in colour, outlined; dropped tokens grey and hatched"
           + ("; dark frames brightened for display" if brightened else ""))
    fig.text(0.08, 0.08 / height, key, fontsize=7.5, color="#444444", ha="left", va="bottom")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return out


def _cells(mask: np.ndarray, cw: float, ch: float, *, hatch: str | None = None, edge: str = KEPT_EDGE,
           lw: float = 0.5):
    """One PatchCollection of the cells of a ``bool[h, w]`` mask (outlined, or hatched)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    ys, xs = np.nonzero(mask)
    rects = [Rectangle((x * cw, y * ch), cw, ch) for y, x in zip(ys.tolist(), xs.tolist())]
    return PatchCollection(rects, facecolor="none", edgecolor=edge, linewidth=lw, hatch=hatch,
                           alpha=0.55 if hatch else 0.9)


def _outlines(keep: np.ndarray, cw: float, ch: float):
    """One PatchCollection outlining the kept cells of a ``bool[h, w]`` mask."""
    return _cells(keep, cw, ch, lw=0.7)
