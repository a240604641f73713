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
    # Somewhere a bright kept cell and a washed-out (grey) dropped cell exist.
    lum = img[..., :3].mean(-1)
    assert (lum > 0.95).any() and ((lum > 0.4) & (lum < 0.75)).any()


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


def test_kept_and_dropped_cells_differ_on_a_dark_scene() -> None:
    # A night version of a real clip frame (18% brightness): the old black veil left kept and dropped
    # cells both near black. Now the frame is brightened for display, kept cells keep their colour and
    # contrast, dropped ones are flat grey (zero chroma, a third of the contrast).
    from vcast.viz import _composite, _display

    frame = make_clip("cuts", frames=8, size=(64, 96), seed=0).frames[:1]
    dark = (frame.astype(np.float32) * 0.18).astype(np.uint8)
    shown, brightened = _display(dark)
    assert brightened and not _display(frame)[1]
    keep = np.zeros((2, 3), bool)
    keep[:, :2] = True  # the left two thirds kept
    img = _composite(shown[0], keep)
    kept, dropped = img[:, :64], img[:, 64:]
    chroma = lambda x: (x.max(-1) - x.min(-1)).mean()  # noqa: E731
    assert chroma(dropped) == 0 and chroma(kept) > 0.05
    assert kept.mean() > 0.2  # visible, not near black
    assert dropped.mean(-1).std() < 0.5 * kept.mean(-1).std()


def test_a_one_frame_clip_has_room_for_its_title_and_labels(tmp_path) -> None:
    frames = make_clip("cuts", frames=8, size=(64, 96), seed=0).frames[:1]
    sel, grid = pixel_selection(frames, retain_ratio=0.25)
    dpi = 50
    img = _png_pixels(plot_selection(frames, sel, grid, tmp_path / "one.png", dpi=dpi,
                                     title="a long title that must not be cut off at the edges of a narrow figure"))
    assert img.shape[1] >= 8 * dpi  # was 2.6 inches wide: title and axis labels ran off the edges


def test_curvature_note_flags_noise_dominated_curvature() -> None:
    from vcast.viz import curvature_note

    def sel(curvature):
        t = len(curvature)
        return Selection(torch.arange(t), torch.ones(t, dtype=torch.long), torch.tensor(curvature), t, 1)

    rng = np.random.default_rng(0)
    noisy = [1.0, *(1 - np.cos(rng.uniform(0, np.pi, 30))).tolist(), 1.0]  # random turns: median ~1
    assert "noise" in curvature_note(sel(noisy))
    assert curvature_note(sel([1.0, *[0.05] * 30, 1.0])) is None  # a smooth path
    assert curvature_note(sel([0.0, *[0.0] * 20, 2.0, 0.0])) is None  # robust curvature: mostly 0
