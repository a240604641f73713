"""The pixel token feature extractor: shape, exact values on hand-made frames, invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vcast.bench.clips import make_clip
from vcast.bench.features import FEATURE_DIM, FEATURE_NAMES, pixel_token_features
from vcast.errors import InputError

MEAN, STD, GRAD, STRUCT = slice(0, 3), slice(3, 6), slice(6, 10), slice(10, 14)


def test_shape_dtype_and_determinism() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (3, 56, 84, 3), dtype=np.uint8)
    x = pixel_token_features(frames, grid=(7, 6))
    assert x.shape == (3, 42, FEATURE_DIM) and x.dtype == torch.float32
    assert FEATURE_DIM == len(FEATURE_NAMES) == 14
    assert torch.equal(x, pixel_token_features(torch.from_numpy(frames), grid=(7, 6)))
    # Sizes that the grid does not divide are resized first.
    assert pixel_token_features(frames[:, :50, :81], grid=(7, 6)).shape == (3, 42, 14)


def test_flat_colour_by_hand() -> None:
    frames = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 255, 51, 0
    x = pixel_token_features(frames, grid=(2, 2))[0]
    # Opponent colour: luminance - 0.5, 2 * (R - G), 2 * ((R + G) / 2 - B) for R, G, B = 1, 0.2, 0.
    luma = 0.299 + 0.587 * 0.2 + 0.0
    expected = torch.tensor([[luma - 0.5, 2 * 0.8, 2 * 0.6]]).expand(4, 3)
    torch.testing.assert_close(x[:, MEAN], expected)
    assert x[:, 3:].abs().max() < 1e-6  # no contrast, no edges, no structure


def test_vertical_edge_by_hand() -> None:
    # Left half black, right half white: horizontal gradient (the 0-degree bin) at the edge cells,
    # structure says "bright on the right" there.
    frames = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    frames[0, :, 8:] = 255
    x = pixel_token_features(frames, grid=(1, 2), cell_pixels=8)[0]
    assert x[0, GRAD][0] > 0 and x[1, GRAD][0] > 0
    assert x[:, GRAD][:, 1:].abs().max() < 1e-6
    frames = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    frames[0, :, 4:] = 255
    s = pixel_token_features(frames, grid=(1, 1))[0, 0, STRUCT]  # quadrants TL, TR, BL, BR
    torch.testing.assert_close(s, torch.tensor([-0.5, 0.5, -0.5, 0.5]))


def test_shift_by_one_cell_shifts_the_tokens() -> None:
    # Translation equivariance: move the picture one cell right, interior tokens move one column.
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)
    a = pixel_token_features(big[:, :, 8:40], grid=(4, 4), cell_pixels=8).view(4, 4, -1)
    b = pixel_token_features(big[:, :, 0:32], grid=(4, 4), cell_pixels=8).view(4, 4, -1)
    # Interior cells (away from the replicated border used by the gradient) agree exactly.
    torch.testing.assert_close(a[1:3, 1:2], b[1:3, 2:3])
    torch.testing.assert_close(a[:, :3, :6], b[:, 1:, :6])  # colour statistics agree everywhere


def test_frame_means_move_little_under_shake_and_far_at_cuts() -> None:
    # The documented property the coverage benchmark relies on.
    ratios = []
    for seed in range(3):
        clip = make_clip("shake", frames=12, size=(112, 112), seed=seed)
        r = F.normalize(pixel_token_features(clip.frames, grid=(7, 7)).mean(1), dim=-1)
        step = (r[1:] - r[:-1]).norm(dim=-1)
        (cut,) = clip.cut_frames
        ratios.append(float(step[[t - 1 for t in clip.shake_frames]].mean() / step[cut - 1]))
    assert np.median(ratios) < 0.3


@pytest.mark.parametrize(
    "frames, kwargs, match",
    [(np.zeros((2, 8, 8), np.uint8), {}, "uint8"), (np.zeros((2, 8, 8, 3), np.float32), {}, "dtype"),
     (np.zeros((0, 8, 8, 3), np.uint8), {}, "empty"), (np.zeros((1, 8, 8, 3), np.uint8), {"grid": (0, 2)}, "grid"),
     (np.zeros((1, 8, 8, 3), np.uint8), {"cell_pixels": 3}, "cell_pixels")],
)
def test_bad_input(frames: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        pixel_token_features(frames, **kwargs)
