"""Causal V-CAST: the curvature budget on a stream, decided frame chunk by frame chunk (tensors only).

Offline V-CAST gives frame t of a T-frame video ``K * w_t`` tokens, ``K = round(T*N*r)`` and
``w = softmax(c / tau)`` over the whole video, so a frame's share depends on every other frame. A
stream never has the whole video. The causal rule commits frames in order and never revisits them:

1. **Curvature from a short window.** The frames being committed get the curvature estimator's
   value (``angle`` or ``robust``, :data:`vcast.core.curvature.CURVATURES`) computed on the window
   ``[last C committed frames, the committed frames, the next L frames]``: the past it needs
   (:data:`CONTEXT_FRAMES`) plus a lookahead of at most :data:`LOOKAHEAD_FRAMES` frames (one for the
   paper's angle, which needs ``r_{t+1}``; two for the robust curvature's wider chord). With the
   lookahead present a frame's angle equals its offline value exactly; without it (the stream's
   newest frame, committed when a question arrives) the frame is the window's endpoint and gets the
   estimator's endpoint value, as the last frame of an offline video does.
2. **A frame's share as if the video ended now.** Frame t is worth ``N * r * e_t / Z``, with
   ``e_t = exp(c_t / tau)`` and ``Z`` the mean of ``e`` over every frame committed so far including
   this commit: exactly what offline V-CAST would give it if the video ended with this commit. The
   commit's budget is the growth of the offline target, ``total_budget(T_after) -
   total_budget(T_before)``, plus its *excess* ``round(N * r * sum_commit(e / Z - 1))`` (turning frames
   get more than the average share, straight ones less), minus a repayment of what earlier commits
   overspent (``debt = spent - total_budget(T_before)``, repaid over :data:`REPAY_HORIZON` frames,
   rounded away from zero so every debt shrinks), clamped to ``[P * min_k, P * N]``. The debt
   stays bounded (about ``REPAY_HORIZON * N``), so the kept ratio tracks ``r`` on any long stream.
3. **Inside the commit, offline V-CAST.** The budget is split over the committed frames by
   :func:`vcast.core.budget.allocate_frames` on ``softmax(c / tau)`` and each frame keeps its top
   tokens by :func:`vcast.core.select.dual_anchor_scores`, as offline.

So a commit that holds a whole clip (no history, no lookahead) is offline V-CAST bit for bit: the
excess of a first commit is zero, the budget is ``total_budget(T)``, and steps 1 and 3 are the
offline computation. Everything is vectorised over the committed frames; the only host
synchronisation is reading the commit's token count (the output length depends on it).

The state between commits is small and bounded: counters, the running sum of ``e`` and the last
``C`` frame representations (``C = 18`` for the robust curvature, 1 for the angle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from vcast.config import VCastConfig
from vcast.core.budget import allocate_frames, total_budget
from vcast.core.curvature import CURVATURES, EPS, LEVEL_HALF_WINDOW
from vcast.core.layout import BatchLayout, check_finite, check_video
from vcast.core.select import dual_anchor_scores, frame_means, frame_ranks
from vcast.core.selection import Selection
from vcast.errors import ConfigError, InputError

# Committed frames the curvature of the next commit may look back at, per estimator: the angle needs
# r_{t-1}; the robust residual needs t-2 and its local level a median over 2 * 8 + 1 residuals.
CONTEXT_FRAMES = {"angle": 1, "robust": 2 * LEVEL_HALF_WINDOW + 2}
# Frames after a committed frame that its curvature may use (the stated lookahead).
LOOKAHEAD_FRAMES = {"angle": 1, "robust": 2}
# Frames over which an overspent (or underspent) budget is paid back.
REPAY_HORIZON = 16


@dataclass(frozen=True)
class CausalState:
    """What the causal rule remembers between commits (immutable: each step returns a new one).

    Attributes:
        frames: frames committed so far.
        spent: tokens kept for them at commit time (eviction does not change it).
        exp_sum: ``FloatTensor[]`` (float64), ``sum exp(c_t / tau)`` over the committed frames.
        context: ``FloatTensor[C, D]``, the L2-normalised frame means of the last committed frames
            (at most :data:`CONTEXT_FRAMES` of the estimator), or None before the first commit.
        tokens: N, the tokens per frame of the stream (fixed by the first commit), or None.
    """

    frames: int = 0
    spent: int = 0
    exp_sum: torch.Tensor = field(default_factory=lambda: torch.zeros((), dtype=torch.float64))
    context: torch.Tensor | None = None
    tokens: int | None = None


@dataclass(frozen=True)
class CausalStep:
    """One commit of the causal rule.

    Attributes:
        selection: the kept tokens of the ``P`` committed frames (flat indices into ``P*N``, per-frame
            budgets, the causal curvature).
        state: the state after the commit.
        token_rank: ``LongTensor[P, N]``, each token's rank in its frame by the dual-anchor score
            (0 = best; the kept tokens of a frame are its ranks ``0 .. k_t - 1``).
        log_weight: ``FloatTensor[P]``, ``c_t / tau``, the frame's log budget weight.
        frame_means: ``FloatTensor[P, D]``, the committed frames' L2-normalised means.
    """

    selection: Selection
    state: CausalState
    token_rank: torch.Tensor
    log_weight: torch.Tensor
    frame_means: torch.Tensor


def check_stream_config(config: VCastConfig) -> None:
    """Raise :class:`ConfigError` for V-CAST options the causal rule does not support."""
    if not isinstance(config, VCastConfig):
        raise ConfigError(f"the causal rule needs a VCastConfig, got {type(config).__name__}")
    if config.is_auto:
        raise ConfigError("retain_ratio='auto' picks a ratio from the whole video's motion, which a stream never "
                          "has; pass a number in (0, 1]")
    if config.token_curvature_weight > 0:
        raise ConfigError("token_curvature_weight > 0 is not supported on streams (it needs each token position "
                          "in the frames around it); use token_curvature_weight=0")


def trajectory(features: torch.Tensor) -> torch.Tensor:
    """``FloatTensor[P, D]``: L2-normalised frame means of ``features[P, N, D]`` (V-CAST's trajectory)."""
    return F.normalize(frame_means(features.float()), dim=-1, eps=EPS)


def window_curvature(commit: torch.Tensor, context: torch.Tensor | None, lookahead: torch.Tensor | None,
                     kind: str) -> torch.Tensor:
    """Curvature ``FloatTensor[P]`` of the committed frames ``commit[P, D]``, computed by the ``kind``
    estimator on the window ``[context, commit, lookahead]`` treated as one video."""
    parts = [p for p in (context, commit, lookahead) if p is not None and p.shape[0]]
    window = torch.cat(parts) if len(parts) > 1 else commit
    layout = BatchLayout.build([window.unsqueeze(1)], window.device)
    start = 0 if context is None else context.shape[0]
    return CURVATURES[kind](window, layout)[start:start + commit.shape[0]]


def commit_budget(logits: torch.Tensor, state: CausalState, tokens: int,
                  config: VCastConfig) -> tuple[int, torch.Tensor]:
    """Tokens for a commit of ``P`` frames whose budget logits are ``logits[P]`` (``c / tau``).

    ``total_budget(T + P) - total_budget(T) + round(N r sum(e / Z - 1)) - repay``, clamped to
    ``[P * min(min_k, N), P * N]`` (see the module docstring; the excess of a first commit is 0).

    Returns:
        ``(K, exp_sum)``: the commit's token count (one host synchronisation reads it) and the
        running ``sum exp(c / tau)`` including this commit (``FloatTensor[]``, float64).
    """
    p, r, min_k = logits.shape[0], float(config.retain_ratio), config.min_tokens_per_frame
    e = torch.exp(logits.double())
    exp_sum = state.exp_sum.to(e.device) + e.sum()
    frames = state.frames + p
    before = total_budget(state.frames, tokens, r, min_k) if state.frames else 0
    k = total_budget(frames, tokens, r, min_k) - before
    if state.frames:
        excess = tokens * r * ((e * (frames / exp_sum)).sum() - p)
        share = (state.spent - before) * min(1.0, p / REPAY_HORIZON)
        k += round(float(excess)) - (math.ceil(share) if share > 0 else math.floor(share))
    return min(max(k, p * min(min_k, tokens)), p * tokens), exp_sum


def causal_step(features: torch.Tensor, state: CausalState, lookahead: torch.Tensor | None,
                config: VCastConfig, *, check_finite_features: bool = True) -> CausalStep:
    """Commit ``P`` frames: select their tokens causally and return the new state.

    Args:
        features: ``Tensor[P, N, D]``, the committed frames' tokens (fp32/fp16/bf16), in order, right
            after the frames already committed.
        state: the state after the previous commit (:class:`CausalState` ``()`` for the first).
        lookahead: ``FloatTensor[L, D]``, :func:`trajectory` of up to :data:`LOOKAHEAD_FRAMES` frames
            that follow the committed ones (not committed here), or None.
        config: a :class:`VCastConfig` with a numeric ``retain_ratio`` (see :func:`check_stream_config`).
        check_finite_features: raise on NaN/inf features (one host sync).

    Returns:
        A :class:`CausalStep`. ``state`` is not modified.

    Raises:
        InputError: malformed features, a token count or width other than the stream's, a lookahead
            longer than the estimator's. ConfigError: unsupported options.
    """
    check_stream_config(config)
    check_video(features)
    p, n, d = features.shape
    if state.tokens is not None and n != state.tokens:
        raise InputError(f"frames have N={n} tokens, the stream's earlier frames had {state.tokens}")
    if state.context is not None and state.context.shape[1] != d:
        raise InputError(f"features have D={d}, the stream's earlier frames had D={state.context.shape[1]}")
    kind = config.curvature
    if lookahead is not None and (lookahead.ndim != 2 or lookahead.shape[1] != d
                                  or lookahead.shape[0] > LOOKAHEAD_FRAMES[kind]):
        raise InputError(f"lookahead must be FloatTensor[L <= {LOOKAHEAD_FRAMES[kind]}, {d}], got shape "
                         f"{tuple(lookahead.shape)}")
    x = features.float()
    r = trajectory(x)
    if check_finite_features:
        check_finite(r, "frame means")
    context = None if state.context is None else state.context.to(r.device)
    c = window_curvature(r, context, lookahead, kind)
    logits = c / config.temperature
    total, exp_sum = commit_budget(logits, state, n, config)
    layout = BatchLayout.build([x], x.device)
    weights = layout.segment_softmax(logits)
    budget = allocate_frames(weights, torch.tensor([total], device=x.device), layout, config.min_tokens_per_frame)
    rank = frame_ranks(dual_anchor_scores(x, r))
    mask = (rank < budget.unsqueeze(1)).reshape(-1)
    dest = torch.where(mask, mask.long().cumsum(0) - 1, torch.full_like(mask, total, dtype=torch.long))
    keep = torch.empty(total + 1, dtype=torch.long, device=x.device)
    keep = keep.scatter_(0, dest, torch.arange(mask.numel(), device=x.device))[:total]

    keep_ctx = CONTEXT_FRAMES[kind]
    history = r if context is None else torch.cat([context, r])
    new_state = replace(state, frames=state.frames + p, spent=state.spent + total,
                        exp_sum=exp_sum,
                        context=history[-keep_ctx:].clone(), tokens=n)
    return CausalStep(Selection(keep, budget, c, p, n), new_state, rank, logits, r)
