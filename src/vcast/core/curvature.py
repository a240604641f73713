"""Per-frame temporal scores from the trajectory of frame representations.

Every estimator maps flat frame representations ``r[F, D]`` (L2-normalised frame means, float32,
videos concatenated along F, see :class:`~vcast.core.layout.BatchLayout`) to ``c[F]`` float32.
Larger c means the frame deserves more of the token budget.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vcast.core.layout import BatchLayout

EPS = 1e-6


def angle_curvature(r: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
    """The paper's curvature: ``c_t = 1 - cos(r_t - r_{t-1}, r_{t+1} - r_t)``.

    Endpoints (and every frame of a video with T <= 2) get 1. The cosine uses eps 1e-6 as
    ``torch.nn.functional.cosine_similarity`` does. Scale-invariant: tiny jitter can score 2.
    """
    c = torch.ones(r.shape[0], dtype=torch.float32, device=r.device)
    if r.shape[0] >= 3:
        v = r[1:] - r[:-1]  # v[i] = r[i+1] - r[i]
        inner = 1.0 - F.cosine_similarity(v[:-1], v[1:], dim=-1, eps=EPS)
        interior = ~(layout.frame_first | layout.frame_last)
        c[1:-1] = torch.where(interior[1:-1], inner, c[1:-1])
    return c


def chord_residual(v: torch.Tensor, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
    """The residual of :func:`interpolation_residual` for any trajectories stacked along dim 0.

    Args:
        v: ``FloatTensor[F, ..., D]``: frames (videos concatenated, in order) of one or more
            trajectories; every index of the middle dims is its own trajectory.
        prev, nxt: ``LongTensor[F]``, each frame's neighbours in the convention of
            :meth:`BatchLayout.neighbours` (an endpoint's missing neighbour is the other one; a
            one-frame video is its own neighbour).

    Returns:
        ``FloatTensor[F, ...]``.
    """
    n = v.shape[0]
    idx = torch.arange(n, device=v.device)
    if n < 2:
        return torch.zeros(v.shape[:-1], dtype=v.dtype, device=v.device)
    first, last = (prev > idx) | (prev == idx), (nxt < idx) | (nxt == idx)
    prev2, nxt2 = prev[prev], nxt[nxt]
    # A wide chord exists where t-2 and t+2 are distinct frames of the same video.
    wide_ok = (prev2 < prev) & (nxt2 > nxt) & ~first & ~last
    narrow = torch.linalg.vector_norm(v - 0.5 * (v[prev] + v[nxt]), dim=-1)
    wide = torch.linalg.vector_norm(v - 0.5 * (v[prev2] + v[nxt2]), dim=-1)
    shape = (n,) + (1,) * (narrow.dim() - 1)
    interior = torch.where(wide_ok.view(shape), torch.minimum(narrow, wide), narrow)

    nb = torch.where(first, nxt, prev)  # an endpoint's neighbour (itself in a one-frame video)
    nb2 = torch.where(first, nxt[nb], prev[nb])  # the next one inward (== idx when T = 2)
    nb2 = torch.where(nb2 == idx, nb, nb2)
    hold = torch.minimum(torch.linalg.vector_norm(v - v[nb], dim=-1), torch.linalg.vector_norm(v - v[nb2], dim=-1))
    extrapolate = torch.linalg.vector_norm(v - 2.0 * v[nb] + v[nb2], dim=-1)
    return torch.where((first | last).view(shape), 0.5 * torch.minimum(hold, extrapolate), interior)


def interpolation_residual(r: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
    """What is lost if frame t is dropped and rebuilt from nearby frames, ``FloatTensor[F]``.

    Interior frames: ``e_t = min(||r_t - (r_{t-1} + r_{t+1}) / 2||, ||r_t - (r_{t-2} + r_{t+2}) / 2||)``,
    the distance to the better of two chords of the trajectory (V-CAST's trajectory-approximation
    view; the wide chord is used where frames t-2 and t+2 exist). Taking the better chord lets an
    isolated outlier *explain away* its neighbours: next to a one-frame insert of size n the
    narrow chord misses by n/2 but the wide one skips the insert, so only the insert itself scores
    n; both frames flanking a cut of length J still score J/2 (every chord across a jump misses
    by half of it); a steady pan scores ~0.

    Endpoints can only be predicted from one side: e is half the error of the best of holding
    ``r_1``, holding ``r_2`` and extrapolating ``2 r_1 - r_2`` (so a cut right after frame 0 marks
    frames 0 and 1 alike, as in the interior). A one-frame video gets 0.
    """
    prev, nxt = layout.neighbours()
    return chord_residual(r, prev, nxt)


def local_level(e: torch.Tensor, layout: BatchLayout, half_window: int) -> torch.Tensor:
    """Median of ``e[F]`` over a window of ``2 * half_window + 1`` frames of the same video around
    each frame (shifted inward at the ends so it keeps its length; the whole video if shorter).
    ``FloatTensor[F]``; vectorised over frames and videos."""
    width = 2 * half_window + 1
    lengths = torch.tensor(layout.frames, device=e.device)[layout.frame_video]
    offset = layout.frame_offset[layout.frame_video]
    local = torch.arange(e.shape[0], device=e.device) - offset
    start = torch.minimum((local - half_window).clamp_min(0), (lengths - width).clamp_min(0))
    j = start[:, None] + torch.arange(width, device=e.device)[None, :]
    valid = j < lengths[:, None]
    window = e[offset[:, None] + torch.minimum(j, lengths[:, None] - 1)]
    return torch.nanmedian(window.masked_fill(~valid, float("nan")), dim=1).values


def robust_curvature(r: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
    """Shake-robust curvature: how far a frame's interpolation residual stands out from the
    residuals around it, ``c in [0, CURVATURE_RANGE]``.

    Design, in V-CAST's terms (token compression as approximating the trajectory of frames):

    1. The *size* of the loss, not its direction: ``e_t`` = :func:`interpolation_residual`, the
       distance from ``r_t`` to the best nearby chord. A cut leaves ``J/2`` on both frames around a
       jump of length J, a one-frame insert of size n leaves n on itself only, a steady pan ~0.
       The angle instead scores any tiny zig-zag as maximal.
    2. Relative to the local typical loss: camera shake is a *sustained* zig-zag whose residuals
       are all alike, sensor noise too, while cuts, inserts and appearing objects are *isolated*
       peaks. The level ``m_t`` is the median residual over :data:`LEVEL_HALF_WINDOW` frames on each
       side (peaks cover fewer than half of a window, so they do not move it; a pattern that lasts
       over half of it becomes the norm), floored at :data:`NOISE_FLOOR` so that noise in a nearly
       static video is not amplified into events.
    3. On a log scale, relative to the video's strongest peak: ``c_t = CURVATURE_RANGE *
       log(max(e_t / m_t, 1)) / log(max(rho_max, EVENT_RATIO))``, ``rho_max`` the video's largest
       ratio. A frame no worse than its surroundings gets 0 (shake frames get the share of any
       ordinary frame), the strongest peak gets the angle's maximum so the softmax temperature keeps
       its meaning, and budgets grow as a power of the ratio below it, so a peak keeps its lead over
       lesser ones (no saturation). A video whose largest ratio is under :data:`EVENT_RATIO` has
       no event, and its values stay proportionally small.

    Args:
        r: ``FloatTensor[F, D]`` L2-normalised frame means (videos concatenated, see ``layout``).
        layout: the batch layout.

    Returns:
        ``FloatTensor[F]``; finite, in ``[0, CURVATURE_RANGE]``, computed per video (a video's values
        do not depend on the others in the batch). One-frame videos get 0.
    """
    e = interpolation_residual(r, layout)
    level = local_level(e, layout, LEVEL_HALF_WINDOW).clamp_min(NOISE_FLOOR)
    excess = torch.log((e / level).clamp_min(1.0))  # >= 0
    top = torch.full((layout.num_videos,), math.log(EVENT_RATIO), dtype=excess.dtype, device=excess.device)
    top = top.scatter_reduce(0, layout.frame_video, excess, reduce="amax")
    return CURVATURE_RANGE * excess / top[layout.frame_video]


# Residuals below this (distance on the unit sphere of frame means, ~0.3 degree) count as noise.
NOISE_FLOOR = 0.005
# A residual this many times the local typical one is a full-strength event.
EVENT_RATIO = 4.0
# Frames on each side of the window whose median residual is the local typical level (17 frames:
# shake lasting over 8 frames is the norm there, a cut's or an insert's 1-2 frames never are).
LEVEL_HALF_WINDOW = 8
# Robust curvature is mapped to [0, CURVATURE_RANGE], the angle's range.
CURVATURE_RANGE = 2.0

CURVATURES = {"angle": angle_curvature, "robust": robust_curvature}


def trajectory_motion(r: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
    """How much new content a video brings per frame, ``FloatTensor[B]`` (0 when T = 1).

    ``mean_{t >= 1} min_{1 <= k <= MOTION_MEMORY} ||r_t - r_{t-k}||``: each frame's distance to the
    nearest of the frames just before it. A static shot scores its noise, a pan or a moving object
    its step, a cut its jump; content that merely comes back (camera shake oscillating around one
    view, a flicker) is near an earlier frame and scores little. The complexity signal of the
    adaptive ratio.
    """
    n = r.shape[0]
    out = torch.zeros(layout.num_videos, dtype=torch.float32, device=r.device)
    if n < 2:
        return out
    local = torch.arange(n, device=r.device) - layout.frame_offset[layout.frame_video]
    k = torch.arange(1, MOTION_MEMORY + 1, device=r.device)
    back = local[:, None] - k[None, :]  # [F, M] local index of frame t - k
    valid = back >= 0
    src = torch.arange(n, device=r.device)[:, None] - k[None, :]
    d = torch.linalg.vector_norm(r[:, None, :] - r[src.clamp_min(0)], dim=-1)
    novelty = d.masked_fill(~valid, float("inf")).amin(dim=1)
    novelty = torch.where(local > 0, novelty, torch.zeros_like(novelty))
    counts = torch.tensor([max(t - 1, 1) for t in layout.frames], device=r.device, dtype=torch.float32)
    return layout.segment_sum(novelty) / counts


# Frames looked back by trajectory_motion to decide whether content is new.
MOTION_MEMORY = 4


def _shifted(v: torch.Tensor, offset: int, length: int) -> torch.Tensor:
    """``out[t] = v[t + offset]`` for ``t < length`` where that exists, else 0 (``[length, ...]``)."""
    out = v.new_zeros((length, *v.shape[1:]))
    lo, hi = max(0, -offset), min(length, v.shape[0] - offset)
    if hi > lo:
        out[lo:hi] = v[lo + offset:hi + offset]
    return out


def contiguous_chord_residual(x: torch.Tensor, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
    """:func:`chord_residual` of ``x[F, N, D]`` computed from frame differences instead of gathers:
    about a dozen streaming passes and four ``[F, N, D]`` temporaries, for the token path.

    Requires each video's frames to be contiguous and in order along dim 0 (as in the shape groups
    of :func:`vcast.core.select.select_tokens`); ``prev``/``nxt`` as for :func:`chord_residual`.
    Returns ``FloatTensor[F, N]``.
    """
    f = x.shape[0]
    if f < 2:
        return x.new_zeros(x.shape[:2])
    idx = torch.arange(f, device=x.device)
    first, last = (prev > idx) | (prev == idx), (nxt < idx) | (nxt == idx)
    # At an endpoint: the video has at least 3 frames (the second neighbour inward is not itself).
    has3 = torch.where(first, nxt[nxt] != idx, prev[prev] != idx)
    wide_ok = (prev[prev] < prev) & (nxt[nxt] > nxt) & ~first & ~last
    d = x[1:] - x[:-1]  # d[t] = x[t+1] - x[t]
    s = d[1:] + d[:-1]  # s[t] = x[t+2] - x[t]
    nd = torch.linalg.vector_norm(d, dim=-1)
    ns = torch.linalg.vector_norm(s, dim=-1)
    n2 = torch.linalg.vector_norm(d[1:] - d[:-1], dim=-1)  # ||x[t] - 2 x[t+1] + x[t+2]||
    n4 = torch.linalg.vector_norm(s[2:] - s[:-2], dim=-1)  # ||x[t] - 2 x[t+2] + x[t+4]||
    del d, s
    col = lambda m: m[:, None]  # noqa: E731
    narrow = _shifted(n2, -1, f)
    interior = torch.where(col(wide_ok), torch.minimum(narrow, _shifted(n4, -2, f)), narrow)
    head = torch.minimum(_shifted(nd, 0, f), torch.minimum(_shifted(ns, 0, f), _shifted(n2, 0, f)))
    head = torch.where(col(has3), head, _shifted(nd, 0, f))
    tail = torch.minimum(_shifted(nd, -1, f), torch.minimum(_shifted(ns, -2, f), _shifted(n2, -2, f)))
    tail = torch.where(col(has3), tail, _shifted(nd, -1, f))
    out = torch.where(col(first), head, torch.where(col(last), tail, interior))
    return 0.5 * torch.where(col(first & last), torch.zeros_like(out), out)


def token_curvature(x: torch.Tensor, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
    """Each token position's own temporal curvature, in ``[0, 1]``: ``FloatTensor[T, N]``.

    The frame-level design of :func:`robust_curvature` applied to every token position's own
    trajectory: the chord residual ``e`` of the token (:func:`contiguous_chord_residual`, raw
    features, so a flat cell's noise stays small), divided by the median residual of its frame's
    tokens (floored at ``TOKEN_NOISE_FLOOR`` times the frame's mean token norm), scored
    ``clip(log(ratio) / log(TOKEN_EVENT_RATIO), 0, 1)``. Tokens that change like the rest of their
    frame (noise, a global shake or pan, a cut) get 0; a region that changes while the rest stays
    (a moving object, an insert) gets up to 1.

    Args:
        x: ``FloatTensor[T, N, D]`` tokens of one shape group (each video's frames contiguous and
            in order).
        prev, nxt: ``LongTensor[T]`` neighbour frame indices within the group
            (:meth:`BatchLayout.neighbours` convention).
    """
    e = contiguous_chord_residual(x, prev, nxt)  # [T, N]
    floor = TOKEN_NOISE_FLOOR * torch.linalg.vector_norm(x, dim=-1).mean(dim=1, keepdim=True)
    level = torch.maximum(e.median(dim=1, keepdim=True).values, floor).clamp_min(EPS)
    score = torch.log((e / level).clamp_min(1.0)) / math.log(TOKEN_EVENT_RATIO)
    return score.clamp_max(1.0)


# A token changing this many times more than its frame's typical token scores 1.
TOKEN_EVENT_RATIO = 4.0
# Token residuals below this fraction of the frame's mean token norm count as noise.
TOKEN_NOISE_FLOOR = 0.01
