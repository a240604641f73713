"""Per-frame temporal scores from the trajectory of frame representations.

Every estimator maps flat frame representations ``r[F, D]`` (L2-normalised frame means, float32,
videos concatenated along F, see :class:`~vcast.core.layout.BatchLayout`) to ``c[F]`` float32.
Larger c means the frame deserves more of the token budget.
"""

from __future__ import annotations

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


def interpolation_residual(r: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
    """``e_t = ||r_t - (r_{t-1} + r_{t+1}) / 2||``: what is lost if frame t is replaced by the
    midpoint of its neighbours (V-CAST's trajectory-approximation view). At an endpoint the missing
    neighbour is replaced by the other one, so ``e = ||r_t - r_nb||``. ``FloatTensor[F]``."""
    prev, nxt = layout.neighbours()
    return torch.linalg.vector_norm(r - 0.5 * (r[prev] + r[nxt]), dim=-1)


def robust_curvature(r: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
    """Shake-robust curvature: the interpolation residual, normalised per video.

    Unlike the angle, the residual keeps the *size* of a turn: a one-frame insert or a cut leaves a
    large residual, while camera jitter (tiny steps in random directions) leaves a tiny one even
    though its angle is maximal. Residuals are divided by the video's largest residual (floored at
    ``NOISE_FLOOR`` so a nearly static video is not blown up to full scale), giving c in [0, 1].
    """
    e = interpolation_residual(r, layout)
    vmax = torch.zeros(layout.num_videos, dtype=e.dtype, device=e.device)
    vmax = vmax.scatter_reduce(0, layout.frame_video, e, reduce="amax")
    scale = vmax.clamp_min(NOISE_FLOOR)[layout.frame_video]
    return (e / scale) * CURVATURE_RANGE


# Residuals below this (in units of the unit-sphere distance between frame means) count as noise.
NOISE_FLOOR = 0.02
# Robust curvature is mapped to [0, CURVATURE_RANGE], the same range as the angle's useful span.
CURVATURE_RANGE = 2.0

CURVATURES = {"angle": angle_curvature, "robust": robust_curvature}


def trajectory_motion(r: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
    """Mean step length ``mean_t ||r_t - r_{t-1}||`` per video, ``FloatTensor[B]`` (0 when T = 1).

    The complexity signal of the adaptive ratio: static clips have short steps, busy ones long.
    """
    steps = torch.zeros(r.shape[0], dtype=torch.float32, device=r.device)
    if r.shape[0] >= 2:
        d = torch.linalg.vector_norm(r[1:] - r[:-1], dim=-1)
        steps[1:] = torch.where(layout.frame_first[1:], torch.zeros_like(d), d)
    counts = torch.tensor([max(t - 1, 1) for t in layout.frames], device=r.device, dtype=torch.float32)
    return layout.segment_sum(steps) / counts


def token_curvature(x: torch.Tensor, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
    """Per-token temporal interpolation residual, ``FloatTensor[T, N]``.

    Args:
        x: ``Tensor[T, N, D]`` float32 tokens of one shape group (frames of several videos).
        prev, nxt: ``LongTensor[T]`` neighbour frame indices within the group.
    """
    xn = F.normalize(x, dim=-1, eps=EPS)
    return torch.linalg.vector_norm(xn - 0.5 * (xn[prev] + xn[nxt]), dim=-1)
