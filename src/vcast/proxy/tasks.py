"""Procedurally generated video questions whose answers need spatio-temporal evidence.

Every clip is ``FRAMES[family]`` RGB frames (16, or :data:`LONG_FRAMES` = 64 for ``late``) of ``FRAME_SIZE x FRAME_SIZE`` pixels: a camera view of a real
photo (scikit-image's sample images, which ship inside the package, so nothing is downloaded), with
drawn shapes and events on top. Each question is answered by ONE token from a small answer set:

- ``needle``: a small shape is shown in a single frame; which of 4 shapes was it?
- ``cuts``: how many hard cuts (0-3) does the clip have? Cuts fall between frames ``2k`` and
  ``2k+1``, inside one temporal patch of the Qwen3-VL vision tower.
- ``motion``: which way (left/right/up/down) did the shape move?
- ``order``: which of two named shapes appeared first?
- ``where``: in which quadrant did the flash happen?
- ``shake``: the camera shakes throughout (a distractor), and the question is about a real event
  (which shape appeared in a single frame).
- ``jolt``: camera motion and a brief real event compete for the budget: the camera jumps 20-36 px
  for one or two frames, once or twice (the frame-mean trajectory turns sharply there), and a shape
  appears in a single frame of a temporal patch no jolt touches; which shape was it? A method that
  spends its budget where the trajectory turns most spends it on the jolts.
- ``late``: a long clip (64 frames, 32 temporal patches); a shape appears in one frame of the last
  quarter; which shape was it? (A method that front-loads its budget, or a model that only reads
  early frames, fails.)

Splits: ``train``, ``val`` and ``test`` draw from disjoint source photos (:data:`SPLIT_PHOTOS`) and
disjoint random streams: clip ``i`` of split ``s`` with seed ``k`` uses ``numpy`` generator
``default_rng([SPLIT_CODE[s], k, i, family index])``, so the same (split, seed, index, family) always gives the same clip
and no two splits share a stream. Families are balanced (clip ``i`` is family ``i % 8``) and answers
are uniform within a family. The train split alone also draws procedural backgrounds (:func:`_texture`,
about a third of its shots) and recolours and turns its photos (:func:`_recolour`); validation and test
clips are plain camera views of their own photos.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import cache

import numpy as np

from vcast.errors import InputError

NUM_FRAMES = 16  # frames of every family but ``late``
LONG_FRAMES = 64  # frames of a ``late`` clip
FRAME_SIZE = 128
FPS = 4.0

FAMILIES = ("needle", "cuts", "motion", "order", "where", "shake", "jolt", "late")
FRAMES = {f: (LONG_FRAMES if f == "late" else NUM_FRAMES) for f in FAMILIES}
SHAPES = ("circle", "square", "triangle", "cross")
# Each of the 4 objects is a shape with its own colour (hue): red circle, green square, blue triangle,
# yellow cross.
SHAPE_HUES = {"circle": 0.0, "square": 0.33, "triangle": 0.62, "cross": 0.15}
COUNTS = ("0", "1", "2", "3")
DIRECTIONS = ("left", "right", "up", "down")
QUADRANTS = ("topleft", "topright", "bottomleft", "bottomright")
ANSWERS = {"needle": SHAPES, "cuts": COUNTS, "motion": DIRECTIONS, "order": SHAPES, "where": QUADRANTS,
           "shake": SHAPES, "jolt": SHAPES, "late": SHAPES}
QUESTIONS = {
    "needle": "which shape appeared ?",
    "cuts": "how many cuts ?",
    "motion": "which way did the shape move ?",
    "order": "which appeared first : {} or {} ?",
    "where": "where was the flash ?",
    "shake": "the camera shakes . which shape appeared ?",
    "jolt": "the camera jolts . which shape appeared ?",
    "late": "which shape appeared ?",
}
# Chance accuracy of each family (uniform guessing among the valid answers).
CHANCE = {f: (0.5 if f == "order" else 1.0 / len(ANSWERS[f])) for f in FAMILIES}

SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
# Disjoint source photos per split (``cat`` is the same picture as ``chelsea``, so only one is used).
SPLIT_PHOTOS = {
    "train": ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "brick", "grass",
              "clock", "cell", "page", "colorwheel", "stereo_motorcycle", "horse", "logo", "checkerboard",
              "binary_blobs", "shepp_logan_phantom"),
    "val": ("camera", "moon", "text"),
    "test": ("chelsea", "coins", "retina", "gravel"),
}
_PHOTO_SIDE = 320  # photos are stored with this shorter side
TOKEN_PX = 32  # pixels per side of one LLM token (16-px patches merged 2x2)
FLASH_TAG = 5  # pixel tag of a flash (shapes are 1..4)
_MIN_TAG_PIXELS = 12
PLAIN = "plain"  # pseudo photo name: a flat background (training warm-up only, see ``make_clip``)
TEXTURE = "texture"  # pseudo photo name: a procedural background (train split only, see ``_texture``)
# The train split's procedural backgrounds count as this many of its photos (8 of 25: about a third
# of the training shots): unlimited colours and textures, so that the shapes are learned apart from
# the 17 bundled photos' look.
TRAIN_TEXTURES = 8
_FLASH = np.array([1.0, 1.0, 0.55], dtype=np.float32)  # the colour a flash blends towards (warm light)


@dataclass(frozen=True)
class Clip:
    """One video question.

    Attributes:
        frames: ``uint8[T, H, W, 3]`` RGB frames.
        family: one of :data:`FAMILIES`.
        question: the question text (words of the proxy tokenizer's vocabulary).
        answer: the one-token answer, one of ``ANSWERS[family]``.
        evidence: frame indices where the answer's evidence is visible.
        distractors: frame indices of distracting camera events (the ``jolt`` family's jumps; empty
            for the other families).
        labels: ``uint8[T/2, G, G, 4]`` per-token training targets (see ``_token_labels``): what the
            token shows, its motion, whether its temporal patch holds a cut, whether its object came first.
    """

    frames: np.ndarray
    family: str
    question: str
    answer: str
    evidence: tuple[int, ...]
    labels: np.ndarray | None = None
    distractors: tuple[int, ...] = ()


# Loader arguments: ``binary_blobs`` draws new blobs on every call unless its generator is seeded.
_PHOTO_ARGS = {"binary_blobs": {"rng": 0}}


@cache
def photo(name: str) -> np.ndarray:
    """``uint8[H, W, 3]``: scikit-image sample ``name`` as RGB, its shorter side resized to 320 px."""
    import skimage.data
    from PIL import Image

    img = getattr(skimage.data, name)(**_PHOTO_ARGS.get(name, {}))
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    img = np.asarray(img)
    if img.dtype != np.uint8:  # bool masks and float phantoms: stretch to 0..255
        img = img.astype(np.float64)
        img = (img - img.min()) / max(float(np.ptp(img)), 1e-12) * 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = Image.fromarray(img[..., :3].astype(np.uint8))
    scale = _PHOTO_SIDE / min(img.size)
    img = img.resize((round(img.size[0] * scale), round(img.size[1] * scale)), Image.BILINEAR)
    out = np.asarray(img)
    out.setflags(write=False)
    return out


def _view(rng: np.random.Generator, name: str, offsets: np.ndarray, augment: bool = False) -> np.ndarray:
    """``float32[T, S, S, 3]`` in [0, 1]: a camera looking at photo ``name``, moved by ``offsets``.

    Args:
        offsets: ``int[T, 2]`` (dy, dx) camera displacement per frame in output pixels, centred on 0.
        augment: also recolour and rotate the photo (:func:`_recolour`; the train split only).
    """
    margin = int(np.abs(offsets).max()) + 1
    need = FRAME_SIZE + 2 * margin
    if name == PLAIN:
        pic = _plain(rng, need)
    elif name == TEXTURE:
        pic = _texture(rng, need)
    else:
        pic = _photo_crop(rng, photo(name), need, augment)
    corners = (offsets + margin).tolist()
    return np.stack([pic[y:y + FRAME_SIZE, x:x + FRAME_SIZE] for y, x in corners])


def _plain(rng: np.random.Generator, side: int) -> np.ndarray:
    """``float32[side, side, 3]``: a flat colour with a gentle gradient (the training warm-up background)."""
    ramp = np.linspace(-0.5, 0.5, side, dtype=np.float32)
    pic = rng.uniform(0.1, 0.9, size=3).astype(np.float32) + ramp[:, None, None] * rng.uniform(
        -0.3, 0.3, size=3).astype(np.float32) + ramp[None, :, None] * rng.uniform(-0.3, 0.3, size=3).astype(np.float32)
    return np.clip(pic, 0.0, 1.0)


def _texture(rng: np.random.Generator, side: int) -> np.ndarray:
    """``float32[side, side, 3]`` in [0, 1]: a random procedural background, one of: multi-scale colour
    noise (blotches to gravel-like grain), a mosaic of coloured rectangles, or coloured stripes / plaid."""
    from PIL import Image

    kind = int(rng.integers(3))
    if kind == 0:
        pic = np.zeros((side, side, 3), dtype=np.float32)
        for cells in rng.choice([3, 6, 12, 24, 48, 96], size=int(rng.integers(1, 4)), replace=False).tolist():
            grid = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
            layer = np.asarray(Image.fromarray(grid).resize((side, side), Image.BILINEAR), dtype=np.float32)
            pic += layer * np.float32(rng.uniform(0.3, 1.0) / 255.0)
        pic -= pic.min(axis=(0, 1))
        pic /= np.maximum(pic.max(axis=(0, 1)), 1e-6)
    elif kind == 1:
        pic = np.empty((side, side, 3), dtype=np.float32)
        pic[:] = rng.random(3)
        for _ in range(int(rng.integers(6, 40))):
            y0, x0 = rng.integers(0, side, size=2)
            h, w = rng.integers(4, side // 2, size=2)
            pic[y0:y0 + h, x0:x0 + w] = rng.random(3)
    else:
        ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
        pic = np.empty((side, side, 3), dtype=np.float32)
        pic[:] = rng.random(3)
        for _ in range(int(rng.integers(1, 3))):
            theta, period = rng.uniform(0, np.pi), rng.uniform(4.0, 40.0)
            wave = 0.5 + 0.5 * np.sin((xs * np.cos(theta) + ys * np.sin(theta)) * (2 * np.pi / period) + rng.uniform(0, 6.3))
            pic += (wave[..., None] * (rng.random(3) - 0.5)).astype(np.float32)
    pic = np.clip(pic, 0.0, 1.0)
    lo = rng.uniform(0.0, 0.6)
    hi = rng.uniform(lo + 0.3, 1.0)
    return (lo + (hi - lo) * pic).astype(np.float32)


def _photo_crop(rng: np.random.Generator, src: np.ndarray, need: int, augment: bool = False) -> np.ndarray:
    """``float32[need, need, 3]``: a random zoom, flip, colour change and crop of photo ``src``."""
    from PIL import Image

    shorter = min(src.shape[:2])
    view = rng.uniform(0.45, 0.95) * shorter  # photo pixels the camera sees across
    scale = max(FRAME_SIZE / view, need / shorter)
    img = Image.fromarray(src)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    h, w = max(need, round(src.shape[0] * scale)), max(need, round(src.shape[1] * scale))
    y0 = int(rng.integers(0, h - need + 1))
    x0 = int(rng.integers(0, w - need + 1))
    pic = np.asarray(img.resize((w, h), Image.BILINEAR, box=None))[y0:y0 + need, x0:x0 + need]
    pic = pic.astype(np.float32) * (1.0 / 255.0)
    if rng.random() < 0.15:
        pic = np.repeat(pic.mean(axis=2, keepdims=True), 3, axis=2)
    pic = np.clip(pic * rng.uniform(0.75, 1.2, size=3).astype(np.float32) + np.float32(rng.uniform(-0.08, 0.08)),
                  0.0, 1.0)
    return _recolour(rng, pic) if augment else pic


def _recolour(rng: np.random.Generator, pic: np.ndarray) -> np.ndarray:
    """Train-split augmentation of ``float32[S, S, 3]``: a quarter turn (half the time) and, 70% of the
    time, a hue rotation (about the grey axis), a chroma scale and a colour tint (which also colours
    grey photos).

    The few bundled photos cover few colours (the test photos include a red retina and an orange cat,
    on which a model trained on the plain photos mistook the red circle for a triangle); recolouring
    puts every background colour behind every shape in training.
    """
    if rng.random() < 0.5:
        pic = np.rot90(pic, k=int(rng.integers(1, 4)))
    if rng.random() < 0.7:
        theta = rng.uniform(0.0, 2.0 * np.pi)
        u = np.full(3, 1.0 / np.sqrt(3.0))
        cross = np.array([[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]])
        rot = np.cos(theta) * np.eye(3) + np.sin(theta) * cross + (1.0 - np.cos(theta)) * np.outer(u, u)
        tint = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.6), 1.0))
        grey = pic.mean(axis=2, keepdims=True)
        pic = grey + (pic - grey) @ (rot.T * rng.uniform(0.7, 1.5)).astype(np.float32)
        pic = np.clip(pic * (tint / tint.mean()).astype(np.float32), 0.0, 1.0)
    return np.ascontiguousarray(pic, dtype=np.float32)


def _camera_path(rng: np.random.Generator, t: int, pan: bool, shake: float = 0.0) -> np.ndarray:
    """``int[T, 2]`` camera offsets: an optional slow pan (<= 1 px/frame) plus optional random shake."""
    path = np.zeros((t, 2))
    if pan:
        path += np.arange(t)[:, None] * rng.uniform(-1.0, 1.0, size=2)
        path -= path.mean(axis=0)
    if shake:
        path += rng.uniform(-shake, shake, size=(t, 2))
    return np.round(path).astype(np.int64)


def _shape_mask(shape: str, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    if shape == "circle":
        return dy * dy + dx * dx <= r * r
    if shape == "square":
        return np.maximum(np.abs(dy), np.abs(dx)) <= 0.8 * r
    if shape == "triangle":
        return (dy >= -r) & (dy <= 0.75 * r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == "cross":
        return ((np.abs(dx) <= 0.3 * r) & (np.abs(dy) <= r)) | ((np.abs(dy) <= 0.3 * r) & (np.abs(dx) <= r))
    raise InputError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _stamp(frame: np.ndarray, tags: np.ndarray, shape: str, cy: float, cx: float, r: float,
           color: np.ndarray) -> None:
    """Draw ``shape`` (radius ``r`` px, dark outline) centred at (cy, cx) into ``float32[H, W, 3]`` in place,
    and tag its pixels in ``int8[H, W]`` with the shape's class (1 + index in :data:`SHAPES`)."""
    ys = np.arange(frame.shape[0], dtype=np.float32)[:, None] - cy
    xs = np.arange(frame.shape[1], dtype=np.float32)[None, :] - cx
    frame[_shape_mask(shape, ys, xs, r + 1.5)] = 0.05
    inside = _shape_mask(shape, ys, xs, r)
    frame[inside] = color
    tags[inside] = 1 + SHAPES.index(shape)


def _color(rng: np.random.Generator, shape: str) -> np.ndarray:
    """The shape's own colour (:data:`SHAPE_HUES`), lightly jittered."""
    hue = (SHAPE_HUES[shape] + rng.uniform(-0.03, 0.03)) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.0)), dtype=np.float32)


def _place(rng: np.random.Generator, r: float) -> tuple[float, float]:
    lo, hi = r + 2, FRAME_SIZE - r - 3
    return float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))


def _shot(rng: np.random.Generator, photos: tuple[str, ...], augment: bool, shake: float = 0.0) -> np.ndarray:
    path = _camera_path(rng, NUM_FRAMES, pan=rng.random() < 0.5, shake=shake)
    return _view(rng, photos[rng.integers(len(photos))], path, augment)


def _stamp_needle(rng: np.random.Generator, frames: np.ndarray, tags: np.ndarray, f: int) -> str:
    """Draw a random shape (radius 8-10 px, random place) into frame ``f``; returns the shape."""
    answer = SHAPES[rng.integers(4)]
    r = rng.uniform(8.0, 10.0)
    _stamp(frames[f], tags[f], answer, *_place(rng, r), r, _color(rng, answer))
    return answer


def _needle(rng, photos, tags, augment, shake: float = 0.0):
    frames = _shot(rng, photos, augment, shake)
    f = int(rng.integers(NUM_FRAMES))
    return frames, _stamp_needle(rng, frames, tags, f), (f,)


def _jolt(rng, photos, tags, augment):
    """1-2 camera jolts (a 20-36 px jump for 1-2 frames, then back) and a shape in one frame of a
    temporal patch that no jolt touches. Evidence: the shape's frame; also returns the jolted frames."""
    path = _camera_path(rng, NUM_FRAMES, pan=rng.random() < 0.5)
    patches = NUM_FRAMES // 2
    jolt_frames: set[int] = set()
    for start in rng.choice(np.arange(1, NUM_FRAMES - 2), size=int(rng.integers(1, 3)), replace=False).tolist():
        dur = int(rng.integers(1, 3))
        angle = rng.uniform(0.0, 2.0 * np.pi)
        jump = rng.uniform(20.0, 36.0) * np.array([np.sin(angle), np.cos(angle)])
        path[start:start + dur] += np.round(jump).astype(np.int64)
        jolt_frames.update(range(start, start + dur))
    jolted = {f // 2 for f in jolt_frames}
    free = [p for p in range(patches) if p not in jolted]
    frames = _view(rng, photos[rng.integers(len(photos))], path, augment)
    f = 2 * int(free[rng.integers(len(free))]) + int(rng.integers(2))
    return frames, _stamp_needle(rng, frames, tags, f), (f,), tuple(sorted(jolt_frames))


def _late(rng, photos, tags, augment):
    """A 64-frame clip with a shape in one frame of its last quarter."""
    path = _camera_path(rng, LONG_FRAMES, pan=rng.random() < 0.5)
    frames = _view(rng, photos[rng.integers(len(photos))], path, augment)
    f = int(rng.integers(LONG_FRAMES * 3 // 4, LONG_FRAMES))
    return frames, _stamp_needle(rng, frames, tags, f), (f,)


def _cuts(rng, photos, tags, augment):
    k = int(rng.integers(4))
    bounds = np.sort(rng.choice(np.arange(1, NUM_FRAMES, 2), size=k, replace=False)).tolist()
    edges = [0, *bounds, NUM_FRAMES]
    frames = np.empty((NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.float32)
    prev = None
    for a, b in zip(edges[:-1], edges[1:]):
        choices = [p for p in photos if p != prev] or list(photos)
        prev = choices[rng.integers(len(choices))]
        frames[a:b] = _view(rng, prev, _camera_path(rng, NUM_FRAMES, pan=rng.random() < 0.5)[a:b], augment)
    return frames, COUNTS[k], tuple(bounds)


def _motion(rng, photos, tags, augment):
    frames = _shot(rng, photos, augment)
    d = int(rng.integers(4))
    r, speed = rng.uniform(8.0, 11.0), rng.uniform(5.5, 6.5)  # px per frame: it crosses most of the frame
    travel = speed * (NUM_FRAMES - 1)
    lo, hi = r + 2, FRAME_SIZE - r - 3
    start = rng.uniform(lo, hi - travel)  # along the motion axis, for a positive direction
    across = rng.uniform(lo, hi)
    steps = start + speed * np.arange(NUM_FRAMES)
    if DIRECTIONS[d] in ("left", "up"):
        steps = (lo + hi) - steps
    shape = SHAPES[rng.integers(4)]
    color = _color(rng, shape)
    for f in range(NUM_FRAMES):
        cy, cx = (across, steps[f]) if DIRECTIONS[d] in ("left", "right") else (steps[f], across)
        _stamp(frames[f], tags[f], shape, cy, cx, r, color)
    return frames, DIRECTIONS[d], tuple(range(NUM_FRAMES))


def _order(rng, photos, tags, augment):
    frames = _shot(rng, photos, augment)
    first, second = (SHAPES[i] for i in rng.choice(4, size=2, replace=False))
    d1, d2, gap = int(rng.integers(2, 5)), int(rng.integers(2, 5)), int(rng.integers(1, 7))
    s1 = int(rng.integers(0, NUM_FRAMES - (d1 + gap + d2) + 1))
    s2 = s1 + d1 + gap
    for shape, start, dur in ((first, s1, d1), (second, s2, d2)):
        r = rng.uniform(7.0, 10.0)
        cy, cx = _place(rng, r)
        color = _color(rng, shape)
        for f in range(start, start + dur):
            _stamp(frames[f], tags[f], shape, cy, cx, r, color)
    named = (first, second) if rng.random() < 0.5 else (second, first)
    evidence = tuple(range(s1, s1 + d1)) + tuple(range(s2, s2 + d2))
    return frames, first, evidence, named


def _where(rng, photos, tags, augment):
    frames = _shot(rng, photos, augment)
    q = int(rng.integers(4))
    half = FRAME_SIZE // 2
    cy = (half if q >= 2 else 0) + rng.uniform(14, half - 14)
    cx = (half if q % 2 else 0) + rng.uniform(14, half - 14)
    sigma = rng.uniform(6.0, 8.0)
    ys = np.arange(FRAME_SIZE, dtype=np.float32)[:, None] - cy
    xs = np.arange(FRAME_SIZE, dtype=np.float32)[None, :] - cx
    glow = np.exp(-(ys * ys + xs * xs) / (2 * sigma * sigma))[..., None]
    f, dur = int(rng.integers(NUM_FRAMES - 1)), int(rng.integers(1, 3))
    frames[f:f + dur] += glow * (_FLASH - frames[f:f + dur])
    tags[f:f + dur][:, glow[..., 0] > 0.5] = FLASH_TAG
    return frames, QUADRANTS[q], tuple(range(f, f + dur))


def make_clip(split: str, seed: int, index: int, family: str | None = None, plain: bool = False) -> Clip:
    """Clip ``index`` of ``split`` under ``seed`` (family ``FAMILIES[index % 8]`` unless given).

    ``plain=True`` replaces the photos by flat colour backgrounds (used early in training, where the
    events stand out more; the val and test splits always use photos).
    """
    if split not in SPLIT_CODE:
        raise InputError(f"unknown split {split!r}; expected one of {sorted(SPLIT_CODE)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be an int >= 0, got {seed!r}")
    family = FAMILIES[index % len(FAMILIES)] if family is None else family
    if family not in FAMILIES:
        raise InputError(f"unknown family {family!r}; expected one of {FAMILIES}")
    rng = np.random.default_rng([SPLIT_CODE[split], int(seed), int(index), FAMILIES.index(family)])
    photos = (PLAIN,) if plain else SPLIT_PHOTOS[split] + ((TEXTURE,) * TRAIN_TEXTURES if split == "train" else ())
    augment = split == "train"
    question = QUESTIONS[family]
    tags = np.zeros((FRAMES[family], FRAME_SIZE, FRAME_SIZE), dtype=np.int8)
    distractors: tuple[int, ...] = ()
    if family == "needle":
        frames, answer, evidence = _needle(rng, photos, tags, augment)
    elif family == "shake":
        frames, answer, evidence = _needle(rng, photos, tags, augment, shake=rng.uniform(4.0, 8.0))
    elif family == "jolt":
        frames, answer, evidence, distractors = _jolt(rng, photos, tags, augment)
    elif family == "late":
        frames, answer, evidence = _late(rng, photos, tags, augment)
    elif family == "cuts":
        frames, answer, evidence = _cuts(rng, photos, tags, augment)
    elif family == "motion":
        frames, answer, evidence = _motion(rng, photos, tags, augment)
    elif family == "order":
        frames, answer, evidence, named = _order(rng, photos, tags, augment)
        question = question.format(*named)
    else:
        frames, answer, evidence = _where(rng, photos, tags, augment)
    pixels = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Clip(frames=pixels, family=family, question=question, answer=answer, evidence=evidence,
                labels=_token_labels(tags, family, answer, evidence), distractors=distractors)


def _token_labels(tags: np.ndarray, family: str, answer: str, evidence: tuple[int, ...]) -> np.ndarray:
    """``uint8[T/2, G, G, 4]`` per LLM token (temporal patch, 32-px cell): (what, motion, cut, first).

    ``what``: the shape class (1-4) or flash (5) covering most of the cell's pixels over the patch's
    two frames (at least :data:`_MIN_TAG_PIXELS`), else 0. ``motion``: 1 + direction on the moving
    shape's cells (motion family), else 0. ``cut``: 1 on every cell of a temporal patch holding a cut.
    ``first``: on cells showing an object, 1 if that object is (one of) the clip's earliest to appear,
    2 if another object appeared in an earlier temporal patch; 0 elsewhere. Only a model that looks
    back in time can tell 1 from 2 (the ``order`` family's evidence).
    """
    g = FRAME_SIZE // TOKEN_PX
    blocks = tags.reshape(tags.shape[0] // 2, 2, g, TOKEN_PX, g, TOKEN_PX)
    counts = np.stack([(blocks == c).sum(axis=(1, 3, 5)) for c in range(1, FLASH_TAG + 1)], axis=-1)
    what = np.where(counts.max(-1) >= _MIN_TAG_PIXELS, counts.argmax(-1) + 1, 0)
    motion = np.where((what > 0) & (family == "motion"), 1 + DIRECTIONS.index(answer) if family == "motion"
                      else 0, 0)
    cut = np.zeros_like(what)
    if family == "cuts":
        cut[[f // 2 for f in evidence]] = 1
    patches = np.arange(what.shape[0])[:, None, None]
    onset = {c: int(patches[..., 0, 0][(what == c).any(axis=(1, 2))].min()) for c in np.unique(what[what > 0])}
    earliest = min(onset.values(), default=0)
    first = np.zeros_like(what)
    for c, t in onset.items():
        first[what == c] = 1 if t == earliest else 2
    return np.stack([what, motion, cut, first], axis=-1).astype(np.uint8)


def make_split(split: str, seed: int, size: int, start: int = 0, plain_fraction: float = 0.0,
               families: tuple[str, ...] = FAMILIES) -> list[Clip]:
    """``size`` clips ``start .. start+size-1`` of ``split``; clip ``i`` is family ``families[i % len(families)]``
    (balanced when ``size`` is a multiple of ``len(families)``; training repeats some families, see
    :data:`vcast.proxy.train.TRAIN_FAMILIES`).

    ``plain_fraction``: the share of clips (chosen by a fixed hash of the index) on flat backgrounds.
    """
    if size <= 0:
        raise InputError(f"size must be > 0, got {size}")
    if not families or any(f not in FAMILIES for f in families):
        raise InputError(f"families must be a non-empty tuple of {FAMILIES}, got {families!r}")
    return [make_clip(split, seed, i, family=families[i % len(families)],
                      plain=(i * 2654435761 % 4096) / 4096 < plain_fraction)
            for i in range(start, start + size)]
