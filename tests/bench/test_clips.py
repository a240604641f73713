"""Synthetic benchmark clips: shapes, determinism and that the ground truth matches the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from vcast.bench.clips import CLIP_KINDS, Clip, cell_coverage, load_photo, make_clip, render_frames
from vcast.errors import InputError

SIZE = (112, 112)  # small frames keep these tests fast


def _diff(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference between consecutive frames, ``float[T-1]``."""
    f = frames.astype(np.float32)
    return np.abs(f[1:] - f[:-1]).mean(axis=(1, 2, 3))


@pytest.mark.parametrize("kind", CLIP_KINDS)
def test_shape_dtype_and_determinism(kind: str) -> None:
    clip = make_clip(kind, frames=12, size=SIZE, seed=3)
    assert isinstance(clip, Clip) and clip.kind == kind
    assert clip.frames.shape == (12, *SIZE, 3) and clip.frames.dtype == np.uint8
    assert clip.event_mask.shape == (12, *SIZE) and clip.event_mask.dtype == bool
    again = make_clip(kind, frames=12, size=SIZE, seed=3)
    assert np.array_equal(clip.frames, again.frames) and np.array_equal(clip.event_mask, again.event_mask)
    assert not np.array_equal(clip.frames, make_clip(kind, frames=12, size=SIZE, seed=4).frames)


@pytest.mark.parametrize("seed", range(3))
def test_cuts_are_where_the_pixels_jump(seed: int) -> None:
    clip = make_clip("cuts", frames=16, size=SIZE, seed=seed)
    assert len(clip.cut_frames) == 2 and 0 < clip.cut_frames[0] < clip.cut_frames[1] < 16
    d = _diff(clip.frames)
    at_cut = d[[c - 1 for c in clip.cut_frames]]
    within = np.delete(d, [c - 1 for c in clip.cut_frames])
    assert at_cut.min() > 3 * within.max()
    assert not clip.event_mask.any() and not clip.shake_frames and not clip.needle_frames


@pytest.mark.parametrize("seed", range(3))
def test_needle_is_one_frame_and_one_region(seed: int) -> None:
    clip = make_clip("needle", frames=16, size=SIZE, seed=seed)
    (t,) = clip.needle_frames
    assert 0 < t < 15
    frames_with_event = np.flatnonzero(clip.event_mask.any(axis=(1, 2)))
    assert frames_with_event.tolist() == [t]
    f = clip.frames.astype(np.float32)
    inside = clip.event_mask[t]
    # The insert changes its pixels against both neighbours; elsewhere only the slow pan and noise do.
    change = np.abs(f[t] - 0.5 * (f[t - 1] + f[t + 1])).mean(-1)
    assert change[inside].mean() > 2 * change[~inside].mean()
    cells = clip.event_cells((14, 14))
    assert cells[t].sum() >= 1 and cells.sum() == cells[t].sum()


@pytest.mark.parametrize("seed", range(3))
def test_shake_then_cut(seed: int) -> None:
    clip = make_clip("shake", frames=16, size=SIZE, seed=seed)
    (cut,) = clip.cut_frames
    shake = np.array(clip.shake_frames)
    assert len(shake) >= 4 and shake.max() < cut - 1 and shake.min() >= 2
    d = _diff(clip.frames)
    assert d[cut - 1] > d[shake - 1].max()  # the cut is a bigger change than any jitter
    assert d[0] < 0.5 * d[shake - 1].mean()  # the first frames are steady (noise only)
    assert d[cut:].max() < 0.5 * d[shake - 1].mean()  # and so is the shot after the cut


@pytest.mark.parametrize("seed", range(3))
def test_slide_object_crosses_a_static_shot(seed: int) -> None:
    clip = make_clip("slide", frames=16, size=SIZE, seed=seed)
    visible = np.flatnonzero(clip.event_mask.any(axis=(1, 2)))
    assert visible[0] >= 2 and visible[-1] <= 13  # static frames before and after
    assert np.array_equal(visible, np.arange(visible[0], visible[-1] + 1))
    centre_x = [np.flatnonzero(clip.event_mask[t].any(axis=0)).mean() for t in visible]
    steps = np.diff(centre_x)
    assert (steps > 0).all() or (steps < 0).all()  # it moves one way
    # Outside the object the shot is static: consecutive frames differ by the noise only.
    f = clip.frames.astype(np.float32)
    still = ~(clip.event_mask[1:] | clip.event_mask[:-1])
    assert np.abs(f[1:] - f[:-1]).mean(-1)[still].mean() < 3.0


@pytest.mark.parametrize("frames", range(8, 25))
def test_cuts_work_for_every_accepted_frame_count(frames: int) -> None:
    for seed in range(4):  # regression: short clips once could never satisfy the cut spacing
        clip = make_clip("cuts", frames=frames, size=(32, 32), seed=seed)
        edges = [0, *clip.cut_frames, frames]
        assert clip.frames.shape[0] == frames and min(np.diff(edges)) >= 2


@pytest.mark.parametrize("kind", CLIP_KINDS)
@pytest.mark.parametrize("size", [(64, 96), (32, 32), (32, 80), (80, 32)])
def test_small_and_non_square_sizes_work(kind: str, size: tuple[int, int]) -> None:
    for frames in (8, 9):  # regression: "slide" at 64x96 raised numpy's "low >= high"
        clip = make_clip(kind, frames=frames, size=size, seed=1)
        assert clip.frames.shape == (frames, *size, 3) and clip.event_mask.shape == (frames, *size)
        if kind in ("needle", "slide"):
            assert clip.event_mask.any() and clip.event_cells((14, 14)).any()


def test_cell_coverage_by_hand() -> None:
    mask = np.zeros((1, 4, 4), dtype=bool)
    mask[0, :2, :2] = True  # the top-left cell of a 2x2 grid
    mask[0, 2, 2] = True  # a quarter of the bottom-right cell
    np.testing.assert_allclose(cell_coverage(mask, (2, 2)), [[1.0, 0.0, 0.0, 0.25]])
    clip = Clip("slide", np.zeros((1, 4, 4, 3), np.uint8), event_mask=mask)
    assert clip.event_cells((2, 2)).tolist() == [[True, False, False, False]]
    small = np.zeros((1, 4, 4), dtype=bool)
    small[0, 3, 0] = True  # visible but covers no cell by half: its best cell still counts
    clip = Clip("slide", np.zeros((1, 4, 4, 3), np.uint8), event_mask=small)
    assert clip.event_cells((2, 2)).tolist() == [[False, False, True, False]]


def test_render_frames_crops_and_clamps() -> None:
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    out = render_frames(img, [[0, 0], [1, 2], [100, -5]], (4, 4))
    assert out.shape == (3, 4, 4, 3)
    assert np.array_equal(out[1], img[1:5, 2:6]) and np.array_equal(out[2], img[2:6, 0:4])
    with pytest.raises(InputError, match="smaller"):
        render_frames(img, [[0, 0]], (7, 4))


def test_photos_ship_offline() -> None:
    img = load_photo("camera")
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8


@pytest.mark.parametrize(
    "kwargs, match",
    [({"kind": "explosion"}, "kind"), ({"kind": "cuts", "frames": 4}, "frames"),
     ({"kind": "cuts", "size": (16, 16)}, "size"), ({"kind": "slide", "size": (31, 96)}, "at least 32x32")],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        make_clip(**kwargs)
    with pytest.raises(InputError, match="photo"):
        load_photo("nope")
