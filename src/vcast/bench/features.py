"""A deterministic, model-free token feature extractor: one feature vector per cell of an
``h x w`` grid over each frame, standing in for a vision encoder's patch tokens.

What :func:`pixel_token_features` computes, per frame and cell (pixels scaled to [0, 1]):

1. The frame is resized (area averaging) to ``(h*p, w*p)`` pixels, ``p`` = the cell side
   (``cell_pixels``, default ``min(H // h, W // w)`` rounded down to an even number, at least 2).
2. ``colour_mean`` (3): the cell's mean in an opponent colour space: luminance
   ``L = 0.299 R + 0.587 G + 0.114 B`` minus 0.5, and the chroma ``CHROMA_GAIN * (R - G)`` and
   ``CHROMA_GAIN * ((R + G) / 2 - B)``. Signed, so the cosine to the frame mean tells colours
   apart; chroma is scaled up because natural photos are far less saturated than they are bright,
   and in RGB a coloured patch on a grey scene would barely turn the vector away from the grey axis.
3. ``colour_std`` (3): the standard deviation of the same three channels inside the cell (contrast).
4. ``gradient`` (4): the gradient of L (central differences, edge-replicated), its magnitude
   summed into 4 unsigned-orientation bins (0, 45, 90, 135 degrees, nearest bin), averaged over the
   cell and multiplied by ``GRADIENT_GAIN`` (edge content and direction).
5. ``structure`` (4): the mean luminance of the cell's four quadrants minus the cell's mean, times
   ``STRUCTURE_GAIN`` (where inside the cell the light is, invariant to brightness).

``D = 14`` (:data:`FEATURE_NAMES`). The groups are scaled to comparable magnitudes so none
dominates. Why this makes V-CAST's scores meaningful: the frame mean of these vectors summarises the
frame's colour and texture, so ``1 - cos(token, frame mean)`` is large for cells that look unlike
the frame (a pasted object, a salient region) and the token norm grows with colour saturation,
contrast and edges. The trajectory of frame means jumps at cuts and inserts and moves little under
small translations, as a vision encoder's pooled embedding does: every feature is an average over
a cell or a quadrant (8 px and up at 224 px), so a shift of a few pixels resamples it only slightly.
(Finer sub-cell layouts, e.g. 4 x 4 pooled pixels, were tried and rejected: their frame mean is
dominated by grid-phase aliasing, so a 6 px shake moved it a third as far as a cut to another photo.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from vcast.errors import InputError

GRADIENT_GAIN = 4.0
CHROMA_GAIN = 2.0
STRUCTURE_GAIN = 1.0
STRUCTURE_SIDE = 2
FEATURE_NAMES = (
    [f"mean_{c}" for c in ("luma", "red_green", "yellow_blue")]
    + [f"std_{c}" for c in ("luma", "red_green", "yellow_blue")]
    + [f"gradient_{a}deg" for a in (0, 45, 90, 135)]
    + [f"structure_{i}{j}" for i in range(STRUCTURE_SIDE) for j in range(STRUCTURE_SIDE)]
)
FEATURE_DIM = len(FEATURE_NAMES)
_LUMA = (0.299, 0.587, 0.114)


def _as_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(frames))
    if x.dim() != 4 or x.shape[-1] != 3:
        raise InputError(f"frames must be uint8 [T, H, W, 3], got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise InputError(f"frames must be uint8 [T, H, W, 3], got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise InputError(f"frames are empty: shape {tuple(x.shape)}")
    return x


def pixel_token_features(
    frames: np.ndarray | torch.Tensor, grid: tuple[int, int] = (14, 14), cell_pixels: int | None = None
) -> torch.Tensor:
    """Per-cell pixel features (see the module docstring for exactly what is computed).

    Args:
        frames: ``uint8[T, H, W, 3]`` (numpy or torch).
        grid: ``(h, w)`` token cells per frame; tokens are in raster order (row-major).
        cell_pixels: side ``p`` of a cell after resizing (even); default from the frame size.

    Returns:
        ``FloatTensor[T, h*w, 14]`` on the CPU, deterministic.
    """
    x = _as_tensor(frames).cpu()
    h, w = int(grid[0]), int(grid[1])
    if h < 1 or w < 1:
        raise InputError(f"grid must be two positive ints (h, w), got {grid!r}")
    t, hh, ww, _ = x.shape
    p = cell_pixels if cell_pixels is not None else max(2, (min(hh // h, ww // w) // 2) * 2)
    if isinstance(p, bool) or not isinstance(p, int) or p < 2 or p % STRUCTURE_SIDE:
        raise InputError(f"cell_pixels must be a positive even int, got {p!r}")
    img = x.permute(0, 3, 1, 2).float() / 255.0  # [T, 3, H, W]
    if (hh, ww) != (h * p, w * p):
        img = F.interpolate(img, size=(h * p, w * p), mode="area")
    luma = sum(c * img[:, i] for i, c in enumerate(_LUMA)).unsqueeze(1)  # [T, 1, hp, wp]

    def cells(a: torch.Tensor) -> torch.Tensor:  # [T, C, h*p, w*p] -> [T, h*w, C, p*p]
        c = a.shape[1]
        return a.reshape(t, c, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(t, h * w, c, p * p)

    r, g, b = img[:, 0], img[:, 1], img[:, 2]
    opponent = cells(torch.stack([luma[:, 0], CHROMA_GAIN * (r - g), CHROMA_GAIN * (0.5 * (r + g) - b)], 1))
    colour_mean = opponent.mean(-1) - torch.tensor([0.5, 0.0, 0.0])
    colour_std = opponent.std(-1, unbiased=False)

    padded = F.pad(luma, (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2])
    gy = 0.5 * (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1])
    mag = torch.sqrt(gx * gx + gy * gy)
    theta = torch.remainder(torch.atan2(gy, gx), math.pi)
    bins = torch.remainder(torch.floor(theta / (math.pi / 4) + 0.5).long(), 4)  # nearest of 0/45/90/135
    hist = torch.zeros(t, 4, h * p, w * p).scatter_(1, bins, mag)
    gradient = cells(hist).mean(-1) * GRADIENT_GAIN

    pooled = F.avg_pool2d(luma, kernel_size=p // STRUCTURE_SIDE)  # [T, 1, s*h, s*w]
    q = STRUCTURE_SIDE
    structure = pooled.reshape(t, h, q, w, q).permute(0, 1, 3, 2, 4).reshape(t, h * w, q * q)
    structure = (structure - structure.mean(-1, keepdim=True)) * STRUCTURE_GAIN
    return torch.cat([colour_mean, colour_std, gradient, structure], dim=-1).contiguous()
