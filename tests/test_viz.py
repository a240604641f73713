"""vcast.viz: model-free selections and the keep picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcast.bench.clips import make_clip
from vcast.core.selection import Selection
from vcast.errors import InputError
from vcast.viz import default_grid, pixel_selection, plot_selection


def test_default_grid_follows_qwen_token_size() -> None:
    assert default_grid(224, 320) == (7, 10)
    assert default_grid(10, 10) == (1, 1)
    assert default_grid(4000, 64) == (32, 2)


def test_pixel_selection_keeps_the_ratio_and_favours_cuts() -> None:
    clip = make_clip("cuts", frames=16, size=(224, 320), seed=0)
    sel, grid = pixel_selection(clip.frames, retain_ratio=0.25)
    assert grid == (7, 10) and sel.num_frames == 16 and sel.tokens_per_frame == 70
    assert int(sel.frame_budget.sum()) == sel.num_kept == round(16 * 70 * 0.25)
    # The frames on either side of each hard cut get more tokens than the frames inside shots.
    near_cut = sorted({i for c in clip.cut_frames for i in (c - 1, c)})
    calm = [i for i in range(1, 15) if i not in near_cut and all(abs(i - c) > 2 for c in clip.cut_frames)]
    assert sel.frame_budget[near_cut].float().mean() > 1.5 * sel.frame_budget[calm].float().mean()
    again, _ = pixel_selection(clip.frames, retain_ratio=0.25)
    assert torch.equal(again.keep_index, sel.keep_index)  # deterministic


def test_pixel_selection_gives_grid_methods_their_grid() -> None:
    frames = make_clip("cuts", frames=16, size=(64, 96), seed=0).frames
    sel, grid = pixel_selection(frames, retain_ratio=0.5, method="pool")  # 2x3 grid, not square
    assert grid == (2, 3) and sel.tokens_per_frame == 6 and sel.num_kept == 48


def _png_pixels(path) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(path)


def test_plot_dims_dropped_cells(tmp_path) -> None:
    # Two white frames, 1x2 grid: frame 0 keeps the left cell, frame 1 the right one.
    frames = np.full((2, 64, 64, 3), 255, np.uint8)
    sel = Selection(keep_index=torch.tensor([0, 3]), frame_budget=torch.tensor([1, 1]),
                    curvature=torch.tensor([0.2, 0.8]), num_frames=2, tokens_per_frame=2)
    out = plot_selection(frames, sel, (1, 2), tmp_path / "sub" / "keep.png", labels=["a", "b"], dpi=60)
    img = _png_pixels(out)
    assert out.exists() and img.ndim == 3 and img.shape[0] > 100
    # Somewhere a bright kept cell and a dark dimmed cell exist.
    lum = img[..., :3].mean(-1)
    assert (lum > 0.95).any() and (lum < 0.4).any()


def test_plot_many_frames_shows_a_subset(tmp_path) -> None:
    clip = make_clip("needle", frames=40, size=(64, 64), seed=1)
    sel, grid = pixel_selection(clip.frames, retain_ratio=0.2, grid=(4, 4))
    out = plot_selection(clip.frames, sel, grid, tmp_path / "k.png", max_shown=8, dpi=50)
    assert out.stat().st_size > 1000


def test_plot_rejects_mismatches(tmp_path) -> None:
    frames = np.zeros((3, 32, 32, 3), np.uint8)
    sel, grid = pixel_selection(frames + 1, retain_ratio=0.5, grid=(2, 2))
    with pytest.raises(InputError, match="one per step"):
        plot_selection(frames[:2], sel, grid, tmp_path / "x.png")
    with pytest.raises(InputError, match="cells"):
        plot_selection(frames, sel, (1, 3), tmp_path / "x.png")
    with pytest.raises(InputError, match="labels"):
        plot_selection(frames, sel, grid, tmp_path / "x.png", labels=["a"])
