"""VidCom2: frame budgets from frame distinctiveness, tokens by distinctiveness to video and frame.

Reference: Liu, Wang, Ma, Zhang, "Video Compression Commander: Plug-and-Play Inference
Acceleration for Video Large Language Models", EMNLP 2025, arXiv 2505.14454; official code
``xuyang-liu16/VidCom2`` (``vidcom2_compression``), merged into vLLM as ``--video-retention-ratio``.

What it does, as the official code:

1. Keep the ``channel_ratio`` (0.5) fraction of channels with the lowest variance over all T*N
   tokens and L2-normalise the tokens on them.
2. Score every token by a multi-scale Gaussian similarity ``sum_a exp(-||x - c||^2 / (2a))``,
   ``a in {2^-3, ..., 2^1}``, to the video centre (mean of all tokens) and to its frame centre.
3. Frame budgets: with ``u_t = -mean_i video_sim(t, i)`` (frame distinctiveness) and
   ``p = softmax(u / temperature)`` (temperature 0.01), the frame keeps the fraction
   ``r * (1 + p_t - mean(p))``, clamped to at most 1. Distinctive frames get more tokens.
4. Each frame keeps its ``k_t`` tokens with the *lowest* video + frame similarity (the most
   distinctive), in index order. Pure pruning: kept tokens keep their original positions.

Ratio mapping (default): the official per-frame counts ``round(scale_t * N)`` (at least 1) need
not sum to the target. We keep exactly ``K = total_budget(T, N, retain_ratio)``: the official
quotas ``q_t = scale_t * N`` are apportioned to K by V-CAST's largest-remainder split
(:func:`vcast.core.budget.allocate_frames`) on top of a one-token floor, with weights
``max(q_t - 1, 0)``, so each frame gets ``1 + (q_t - 1)`` up to rounding (capped at N): when every
quota is at least one token, the budgets are the largest-remainder rounding of the official
quotas themselves (T=2, N=4, r=0.5: quotas [1, 3] give [1, 3], as the authors' code). Until this
was measured against the official code (issue 13) the split put the floor first and spread the
rest by the normalised scales, which flattened the budgets of short clips ([2, 2] there).

``reproduce="authors"`` (:mod:`vcast.methods.vidcom2_reproduce`, ``xuyang-liu16/VidCom2``
``vidcom2.py``), line by line against the default:

- channels: ``int(D * channel_ratio)`` lowest-variance channels by ``torch.topk`` (gathered in its
  order), like the default, but every step (variance, normalisation, kernel, softmax, scales) runs
  in the features' dtype (bf16 on real checkpoints); default: float32 with float64 variance sums;
- counts: the official ``round(scale_t * N)`` per frame, at least 1, whatever they sum to (so K is
  not ``round(T*N*r)``: typically within a few tokens of it); default: exactly K (above);
- per frame: ``torch.topk(score, k, largest=False, sorted=False)``, ties as PyTorch orders them;
  default: ties to the lower index.

``reproduce="vllm"`` (vLLM's ``vllm/multimodal/video_prune/vidcom2.py`` at ``q = 1 - r``): the
authors' scores and counts with two vLLM changes, at least one channel and counts capped at N, then
a reconcile to vLLM's count ``max(T, min(int(T*N*(1 - q)), T*N))``: extra tokens are dropped where
the score is highest (most redundant), missing ones added where it is lowest, across the whole video
(``torch.topk`` ties); the reconcile may empty a frame. Default: K by the split above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from vcast.config import MethodConfig
from vcast.core.budget import allocate_frames
from vcast.core.layout import BatchLayout
from vcast.core.selection import Selection
from vcast.errors import ConfigError
from vcast.methods._common import (
    float_frames,
    kept_total,
    make_selection,
    mask_to_index,
    one_video,
    topk_mask,
)
from vcast.methods.registry import MethodSpec, register_method

# Bandwidths a of the multi-scale Gaussian kernel, as in the official code.
GAUSSIAN_BANDWIDTHS = (0.125, 0.25, 0.5, 1.0, 2.0)
# Rows per chunk of the chunked passes (a few MB of buffer at D = 3584).
CHUNK_ROWS = 512


@dataclass(frozen=True)
class VidCom2Config(MethodConfig):
    """VidCom2 options (defaults: the official code).

    Attributes:
        channel_ratio: fraction of lowest-variance channels used for the similarities, in (0, 1].
        temperature: softmax temperature of the frame-distinctiveness weights (> 0).
    """

    method: ClassVar[str] = "vidcom2"
    REPRODUCE_MODES: ClassVar[tuple[str, ...]] = ("authors", "vllm")

    channel_ratio: float = 0.5
    temperature: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        c = self.channel_ratio
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or not 0 < c <= 1:
            raise ConfigError(f"channel_ratio must be in (0, 1], got {c!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ConfigError(f"temperature must be a finite number > 0, got {t!r}")


def _gaussian(dist_sq: torch.Tensor) -> torch.Tensor:
    return sum(torch.exp(-dist_sq / (2.0 * a)) for a in GAUSSIAN_BANDWIDTHS)


def column_variance(flat: torch.Tensor, rows: int = CHUNK_ROWS) -> torch.Tensor:
    """Population variance of each column of ``flat[M, D]``, ``DoubleTensor[D]``.

    Shifted by the first row, summed per row chunk (float32, as a ones-row product) and accumulated
    in float64, in one pass with a reused buffer: ``Tensor.var(dim=0)`` is ~20x slower on CPU and
    ``(x * x).sum(0)`` allocates an ``[M, D]`` temporary.
    """
    m, d = flat.shape
    shift = flat[0]
    s1 = torch.zeros(d, dtype=torch.float64, device=flat.device)
    s2 = torch.zeros_like(s1)
    buf = torch.empty(min(rows, m), d, dtype=flat.dtype, device=flat.device)
    ones = torch.ones(1, min(rows, m), dtype=flat.dtype, device=flat.device)
    for a in range(0, m, rows):  # row chunks of the data (not frames)
        cur = buf[: min(rows, m - a)]
        one = ones[:, : cur.shape[0]]
        torch.sub(flat[a : a + rows], shift, out=cur)
        s1 += (one @ cur).squeeze(0).double()  # column sums as a row-times-matrix product
        cur.mul_(cur)
        s2 += (one @ cur).squeeze(0).double()
    mean = s1 / m
    return (s2 / m - mean * mean).clamp(min=0.0)


def masked_norms(flat: torch.Tensor, mask: torch.Tensor, rows: int = CHUNK_ROWS) -> torch.Tensor:
    """``FloatTensor[M]``: the norm of each row of ``flat[M, D]`` over the channels where
    ``mask[D]`` (0/1 float) is 1, by row chunks with a reused buffer."""
    m, d = flat.shape
    out = torch.empty(m, dtype=flat.dtype, device=flat.device)
    buf = torch.empty(min(rows, m), d, dtype=flat.dtype, device=flat.device)
    for a in range(0, m, rows):
        cur = buf[: min(rows, m - a)]
        torch.mul(flat[a : a + rows], flat[a : a + rows], out=cur)
        torch.mv(cur, mask, out=out[a : a + rows])
    return out.sqrt()


def vidcom2_scores(xf: torch.Tensor, channel_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(video similarity, frame similarity)``, each ``FloatTensor[T, N]`` (steps 1-2).

    Equal to gathering the channels, normalising the tokens and evaluating the kernel directly
    (tested), but computed without a copy of the selected channels: with the 0/1 channel mask m,
    ``a_i = (x_i * m) / max(||x_i * m||, 1e-12)``, every centre c lives on the selected channels,
    so ``a_i . c = (x_i . c) / max(...)`` is one batched product and
    ``||a_i - c||^2 = ||a_i||^2 + ||c||^2 - 2 a_i . c``.

    Args:
        xf: ``FloatTensor[T, N, D]``.
        channel_ratio: fraction of lowest-variance channels kept.
    """
    t, n, d = xf.shape
    flat = xf.reshape(t * n, d)
    keep_c = max(int(d * channel_ratio), 1)
    channels = torch.sort(column_variance(flat), stable=True).indices[:keep_c]
    mask = torch.zeros(d, dtype=xf.dtype, device=xf.device).index_fill_(0, channels, 1.0)
    norms = masked_norms(flat, mask).view(t, n)
    inv = 1.0 / norms.clamp(min=1e-12)  # F.normalize's eps
    unit_sq = (norms * inv).square()  # ||a_i||^2: 1, or 0 for a token that is zero on the channels
    frame_centre = torch.bmm(inv.unsqueeze(1) / n, xf).squeeze(1) * mask  # [T, D]
    video_centre = frame_centre.mean(dim=0, keepdim=True)
    centres = torch.stack([video_centre.expand(t, -1), frame_centre], dim=1)  # [T, 2, D]
    # rows times the token matrix ([T, 2, D] @ [T, D, N]) streams x once; x @ columns is ~2x slower
    dots = torch.bmm(centres, xf.transpose(1, 2)) * inv.unsqueeze(1)  # [T, 2, N]
    c_sq = centres.square().sum(dim=-1)  # [T, 2]
    dist_sq = (unit_sq.unsqueeze(1) + c_sq.unsqueeze(-1) - 2.0 * dots).clamp(min=0.0)
    sims = _gaussian(dist_sq)
    return sims[:, 0], sims[:, 1]


def select_vidcom2(features: torch.Tensor, config: VidCom2Config) -> Selection:
    """Distinctiveness-weighted frame budgets, most distinctive tokens per frame.

    Args:
        features: ``Tensor[T, N, D]``.
        config: a :class:`VidCom2Config`.

    Returns:
        A :class:`Selection`; ``curvature`` is the frame distinctiveness ``u_t``.
    """
    x = one_video(features)
    xf, _ = float_frames(x)
    if config.reproduce is not None:
        from vcast.methods import vidcom2_reproduce as published

        run = published.select_authors if config.reproduce == "authors" else published.select_vllm
        return run(x, config.retain_ratio, config.channel_ratio, config.temperature)
    t, n, _ = x.shape
    k = kept_total(t, n, config.retain_ratio)
    video_sim, frame_sim = vidcom2_scores(xf, config.channel_ratio)
    distinct = -video_sim.mean(dim=1)
    p = torch.softmax((distinct - distinct.max()) / config.temperature, dim=0)
    scales = (config.retain_ratio * (1.0 + p - p.mean())).clamp(max=1.0)
    above_floor = (scales * n - 1.0).clamp(min=0.0)  # the official quota beyond the one-token floor
    total = above_floor.sum()
    weights = torch.where(total > 0, above_floor / total.clamp(min=1e-30), torch.full_like(scales, 1.0 / t))
    layout = BatchLayout.build([x], x.device)
    budget = allocate_frames(weights, torch.tensor([k], device=x.device), layout, min_tokens_per_frame=1)
    mask = topk_mask(video_sim + frame_sim, budget, largest=False)
    return make_selection(mask_to_index(mask, k), budget, t, n, curvature=distinct)


register_method(MethodSpec(
    name="vidcom2",
    config_cls=VidCom2Config,
    select=select_vidcom2,
    summary="VidCom2: budgets from frame distinctiveness; keep tokens least similar to video and frame",
    keeps_every_frame=lambda cfg: cfg.reproduce != "vllm",
    every_frame_note="yes: one token per frame first (authors: each count is at least 1); vllm mode: no, its "
                     "global reconcile can take a frame's last token",
))
