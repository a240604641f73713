"""Synthetic clips built from real photos (scikit-image's bundled samples), with ground truth.

Every clip is a :class:`Clip`: ``frames`` ``uint8[T, H, W, 3]`` plus the frames and pixels that
matter. Shots are integer-pixel crop windows moving over an upscaled photo (a slow pan, or random
jitter for camera shake), with mild per-frame sensor noise (Gaussian, sigma 2 grey levels) so no
two frames are identical. Kinds (:data:`CLIP_KINDS`):

- ``"cuts"``: three panning shots of different photos joined by hard cuts.
- ``"needle"``: one panning shot; a single interior frame carries a patch of another photo
  (the needle, 2 to 4 token cells wide).
- ``"shake"``: a steady shot, then camera shake (random translations of up to ``SHAKE_PX`` px),
  then a hard cut to a steady shot of another photo.
- ``"slide"``: a static shot (noise only); during 40-60 % of the clip an object (a patch of
  another photo, 3 to 4 cells wide) slides across it, entering and leaving half visible.

Ground truth: ``cut_frames`` are the first frames of each new shot; ``shake_frames`` the frames
whose crop window moved by jitter, except the last frame before the cut (it is part of the cut);
``needle_frames`` the frames with an insert; ``event_mask`` ``bool[T, H, W]`` marks the needle /
sliding-object pixels. :meth:`Clip.event_cells` maps it onto a token grid. Sizes scale with the
frame size (numbers above are at 224 px, 14 cells across).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache

import numpy as np

from vcast.errors import InputError

CLIP_KINDS = ("cuts", "needle", "shake", "slide")
# Photos shipped inside scikit-image (no download needed).
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "motorcycle", "coins")
NOISE_SIGMA = 2.0  # sensor noise, grey levels
SHAKE_PX = 6  # camera-shake amplitude at 224 px (scaled with the frame size)
PAN_PX = 1.5  # slow pan speed, px per frame at 224 px
MARGIN = 1.25  # photos are scaled so a frame-sized window has this much room to move


@dataclass(frozen=True)
class Clip:
    """A synthetic clip and its ground truth.

    Attributes:
        kind: one of :data:`CLIP_KINDS`.
        frames: ``uint8[T, H, W, 3]``.
        cut_frames: first frame of every shot after a hard cut.
        shake_frames: frames displaced by camera shake.
        needle_frames: frames carrying a one-frame insert.
        event_mask: ``bool[T, H, W]``, pixels of the needle / sliding object (all False otherwise).
        seed: the seed that built it.
    """

    kind: str
    frames: np.ndarray
    cut_frames: tuple[int, ...] = ()
    shake_frames: tuple[int, ...] = ()
    needle_frames: tuple[int, ...] = ()
    event_mask: np.ndarray | None = field(default=None, repr=False)
    seed: int = 0

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def event_cells(self, grid: tuple[int, int], min_cover: float = 0.5) -> np.ndarray:
        """``bool[T, h*w]``: token cells (raster order) covered by the event for >= ``min_cover``
        of their area; in a frame where the event is visible but covers no cell that much, its most
        covered cell counts (so a visible event always has at least one token)."""
        cover = cell_coverage(self.event_mask, grid)
        cells = cover >= min_cover
        best = cover.argmax(axis=1)
        fallback = (cover.max(axis=1) > 0) & ~cells.any(axis=1)
        cells[np.flatnonzero(fallback), best[fallback]] = True
        return cells


def cell_coverage(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``float[T, h*w]``: fraction of each token cell covered by ``mask`` ``bool[T, H, W]``.

    Cells split the frame with edges ``round(linspace(0, H, h + 1))`` (same for W)."""
    t, hh, ww = mask.shape
    h, w = grid
    ys = np.round(np.linspace(0, hh, h + 1)).astype(int)
    xs = np.round(np.linspace(0, ww, w + 1)).astype(int)
    integral = np.zeros((t, hh + 1, ww + 1), dtype=np.int64)
    integral[:, 1:, 1:] = mask.astype(np.int64).cumsum(1).cumsum(2)
    y0, y1, x0, x1 = ys[:-1, None], ys[1:, None], xs[None, :-1], xs[None, 1:]
    area = (y1 - y0) * (x1 - x0)
    s = integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0] + integral[:, y0, x0]
    return (s / np.maximum(area, 1)).reshape(t, h * w)


@cache
def load_photo(name: str) -> np.ndarray:
    """A bundled scikit-image photo as ``uint8[H, W, 3]`` (greyscale ones are replicated)."""
    import skimage.data as data

    if name not in PHOTOS:
        raise InputError(f"unknown photo {name!r}; available: {list(PHOTOS)}")
    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3].astype(np.uint8))


@lru_cache(maxsize=64)
def fit_photo(name: str, size: tuple[int, int], margin: float = MARGIN) -> np.ndarray:
    """The photo resized (anti-aliased) so it covers ``margin * size``: ``uint8[H', W', 3]``
    (cached: treat it as read-only)."""
    from skimage.transform import resize

    img = load_photo(name)
    scale = max(size[0] * margin / img.shape[0], size[1] * margin / img.shape[1])
    shape = (max(size[0], round(img.shape[0] * scale)), max(size[1], round(img.shape[1] * scale)))
    out = (resize(img, shape, anti_aliasing=True) * 255).round().astype(np.uint8)
    out.flags.writeable = False
    return out


def render_frames(image: np.ndarray, offsets: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop windows of ``size = (H, W)`` at integer top-left ``offsets`` ``int[T, 2]`` (y, x),
    clamped inside ``image`` ``uint8[H', W', 3]``: returns ``uint8[T, H, W, 3]``."""
    offsets = np.asarray(offsets, dtype=int).reshape(-1, 2)
    ymax, xmax = image.shape[0] - size[0], image.shape[1] - size[1]
    if ymax < 0 or xmax < 0:
        raise InputError(f"image {image.shape[:2]} is smaller than the frame size {size}")
    ys = np.clip(offsets[:, 0], 0, ymax)
    xs = np.clip(offsets[:, 1], 0, xmax)
    return np.stack([image[y:y + size[0], x:x + size[1]] for y, x in zip(ys, xs)])


def add_noise(frames: np.ndarray, rng: np.random.Generator, sigma: float = NOISE_SIGMA) -> np.ndarray:
    """Frames plus i.i.d. Gaussian noise of ``sigma`` grey levels, rounded and clipped to uint8."""
    noisy = frames.astype(np.float32) + rng.standard_normal(frames.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _pan(rng: np.random.Generator, image: np.ndarray, size: tuple[int, int], t: int, speed: float) -> np.ndarray:
    """Offsets ``int[t, 2]`` of a straight pan at ``speed`` px/frame from a random start."""
    room = np.array([image.shape[0] - size[0], image.shape[1] - size[1]], dtype=float)
    angle = rng.uniform(0, 2 * np.pi)
    step = speed * np.array([np.sin(angle), np.cos(angle)])
    travel = np.abs(step) * max(t - 1, 0)
    lo = np.where(step >= 0, 0.0, travel)
    start = lo + rng.uniform(0, 1, 2) * np.maximum(room - travel, 0)
    return np.round(start + np.arange(t)[:, None] * step).astype(int)


def _patch(rng: np.random.Generator, name: str, hw: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """A random ``uint8[h, w, 3]`` crop of another photo (the needle / sliding object)."""
    img = fit_photo(name, size)
    y = rng.integers(0, img.shape[0] - hw[0] + 1)
    x = rng.integers(0, img.shape[1] - hw[1] + 1)
    return img[y:y + hw[0], x:x + hw[1]]


def _scaled(px: float, size: tuple[int, int]) -> float:
    return px * min(size) / 224.0


def make_clip(kind: str, frames: int = 16, size: tuple[int, int] = (224, 224), seed: int = 0) -> Clip:
    """Build one clip of ``kind`` (see the module docstring) with ``frames`` frames of ``size = (H, W)``.

    Deterministic in ``seed`` (photos, positions, jitter and noise all come from it).
    """
    if kind not in CLIP_KINDS:
        raise InputError(f"unknown clip kind {kind!r}; choose one of {list(CLIP_KINDS)}")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 8:
        raise InputError(f"frames must be an int >= 8 (room for shots and events), got {frames!r}")
    size = (int(size[0]), int(size[1]))
    if min(size) < 32:
        raise InputError(f"size must be at least 32x32 pixels, got {size}")
    rng = np.random.default_rng([seed, CLIP_KINDS.index(kind)])
    photos = [PHOTOS[i] for i in rng.permutation(len(PHOTOS))]
    t = frames
    mask = np.zeros((t, *size), dtype=bool)
    pan = _scaled(PAN_PX, size)

    if kind == "cuts":
        shortest = max(2, t // 5)  # frames per shot at least
        first_cut = int(rng.integers(shortest, t - 2 * shortest + 1))
        second_cut = int(rng.integers(first_cut + shortest, t - shortest + 1))
        edges = [0, first_cut, second_cut, t]
        shots = []
        for i in range(3):
            img = fit_photo(photos[i], size)
            n = edges[i + 1] - edges[i]
            shots.append(render_frames(img, _pan(rng, img, size, n, pan), size))
        out = np.concatenate(shots)
        return Clip(kind, add_noise(out, rng), cut_frames=tuple(edges[1:3]), event_mask=mask, seed=seed)

    if kind == "needle":
        img = fit_photo(photos[0], size)
        out = render_frames(img, _pan(rng, img, size, t, pan), size)
        at = int(rng.integers(2, t - 2))
        cell = min(size) / 14.0
        hw = (int(round(cell * rng.uniform(2, 4))), int(round(cell * rng.uniform(2, 4))))
        y = int(rng.integers(0, size[0] - hw[0] + 1))
        x = int(rng.integers(0, size[1] - hw[1] + 1))
        out[at, y:y + hw[0], x:x + hw[1]] = _patch(rng, photos[1], hw, size)
        mask[at, y:y + hw[0], x:x + hw[1]] = True
        return Clip(kind, add_noise(out, rng), needle_frames=(at,), event_mask=mask, seed=seed)

    if kind == "shake":
        steady = int(rng.integers(2, 4))
        cut = int(rng.integers(max(t * 2 // 3, steady + 3), t - 1))  # at least 3 shaken frames
        img = fit_photo(photos[0], size)
        centre = np.array([(img.shape[0] - size[0]) // 2, (img.shape[1] - size[1]) // 2])
        amp = max(1, round(_scaled(SHAKE_PX, size)))
        jitter = rng.integers(-amp, amp + 1, size=(cut - steady, 2))
        for i in range(len(jitter)):  # every shaken frame moves (nudge a repeat by one pixel)
            before = jitter[i - 1] if i else np.zeros(2, dtype=jitter.dtype)
            if (jitter[i] == before).all():
                jitter[i, 0] += 1 if jitter[i, 0] < amp else -1
        offsets = np.concatenate([np.repeat(centre[None], steady, 0), centre + jitter])
        # The shaken frames, except the last one before the cut: that one belongs to the cut (both
        # sides of a discontinuity are needed to represent it).
        moved = np.arange(steady, cut - 1)
        img_b = fit_photo(photos[1], size)
        centre_b = np.array([(img_b.shape[0] - size[0]) // 2, (img_b.shape[1] - size[1]) // 2])
        out = np.concatenate([render_frames(img, offsets, size),
                              render_frames(img_b, np.repeat(centre_b[None], t - cut, 0), size)])
        return Clip(kind, add_noise(out, rng), cut_frames=(cut,), shake_frames=tuple(int(i) for i in moved),
                    event_mask=mask, seed=seed)

    # slide: a static shot; an object crosses it during the middle part of the clip.
    img = fit_photo(photos[0], size)
    out = render_frames(img, np.repeat(_pan(rng, img, size, 1, 0.0), t, 0), size)
    cell = min(size) / 14.0
    hw = (int(round(cell * rng.uniform(3, 4))), int(round(cell * rng.uniform(3, 4))))
    sprite = _patch(rng, photos[1], hw, size)
    span = int(rng.integers(round(0.4 * t), min(round(0.6 * t), t - 4) + 1))
    first = int(rng.integers(2, t - 2 - span + 1))  # two static frames before and after
    y = int(rng.integers(0, size[0] - hw[0] + 1))
    xs = np.round(np.linspace(-hw[1] * 0.5, size[1] - hw[1] * 0.5, span)).astype(int)
    if rng.random() < 0.5:
        xs = xs[::-1]
    for i, x in zip(range(first, first + span), xs):
        a, b = max(x, 0), min(x + hw[1], size[1])
        out[i, y:y + hw[0], a:b] = sprite[:, a - x:b - x]
        mask[i, y:y + hw[0], a:b] = True
    return Clip(kind, add_noise(out, rng), event_mask=mask, seed=seed)
