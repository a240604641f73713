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
2. **A commit's share as if the video ended now.** Offline V-CAST on the ``T`` frames seen so far
   gives frame t ``min(N, m + lam * e_t)`` tokens (``e_t = exp(c_t / tau)``, ``m`` the per-frame
   floor, ``lam`` such that the shares sum to ``K(T) = total_budget(T)``; this is
   :func:`vcast.core.budget.allocate_frames` before rounding, caps included). The commit gets the
   sum of its frames' shares, with ``lam`` solved in closed form over the committed frames and a
   fixed histogram of the earlier frames' weights (:data:`WEIGHT_BINS` bins of ``c`` in ``[0, 2]``,
   each holding its count and its exact sum of ``e``): turning frames get more than the average
   share, straight ones less, and at ``retain_ratio=1`` every frame keeps all ``N``. What earlier
   commits overspent (``debt = spent - K(T_before)``, from rounding and from shares computed before
   later frames changed the normaliser) is repaid over :data:`REPAY_HORIZON` frames, rounded away
   from zero so every debt shrinks; the result is clamped to ``[P * m, P * N]``. The debt stays
   bounded (about ``REPAY_HORIZON * N``), so the kept ratio tracks ``r`` on any long stream.
3. **Inside the commit, offline V-CAST.** The budget is split over the committed frames by
   :func:`vcast.core.budget.allocate_frames` on ``softmax(c / tau)`` and each frame keeps its top
   tokens by :func:`vcast.core.select.dual_anchor_scores`, as offline.

So a commit that holds a whole clip (no history, no lookahead) is offline V-CAST bit for bit: a
first commit's budget is ``total_budget(T)`` (its shares sum to it), and steps 1 and 3 are the
offline computation. Everything is vectorised over the committed frames; the only host
synchronisation is reading the commit's token count (the output length depends on it).

The state between commits is small and bounded: counters, the weight histogram and the last ``C``
frame representations (``C = 18`` for the robust curvature, 1 for the angle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from vcast.config import VCastConfig
from vcast.core.budget import allocate_frames, total_budget
from vcast.core.curvature import CURVATURE_RANGE, CURVATURES, EPS, LEVEL_HALF_WINDOW
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
# Bins of the histogram of earlier frames' curvature (c in [0, CURVATURE_RANGE]) that stands in for
# them when a commit's share is solved.
WEIGHT_BINS = 64


@dataclass(frozen=True)
class CausalState:
    """What the causal rule remembers between commits (immutable: each step returns a new one).

    Attributes:
        frames: frames committed so far.
        spent: tokens kept for them at commit time (eviction does not change it).
        weights: ``FloatTensor[2, WEIGHT_BINS]`` (float64): per curvature bin, the committed frames'
            count and their sum of ``exp(c_t / tau)``.
        context: ``FloatTensor[C, D]``, the L2-normalised frame means of the last committed frames
            (at most :data:`CONTEXT_FRAMES` of the estimator), or None before the first commit.
        tokens: N, the tokens per frame of the stream (fixed by the first commit), or None.
    """

    frames: int = 0
    spent: int = 0
    weights: torch.Tensor = field(default_factory=lambda: torch.zeros(2, WEIGHT_BINS, dtype=torch.float64))
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
    if getattr(config, "reproduce", None) is not None:
        raise ConfigError(f"reproduce={config.reproduce!r} runs published offline code on whole videos; a stream "
                          "uses the causal rule: use reproduce=None")
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


def water_level(values: torch.Tensor, counts: torch.Tensor, floor: int, cap: int, total: float) -> torch.Tensor:
    """``lam`` with ``sum_j counts_j * min(cap, floor + lam * values_j) = total`` (``FloatTensor[]``).

    ``values > 0``; the sum is piecewise linear in ``lam`` with a kink where each ``floor + lam * v``
    reaches ``cap``, so ``lam`` is read off the segment that holds ``total`` (sorted kinks, cumulative
    sums; no iteration). If ``total`` needs every term at its cap, the last kink is returned.
    """
    room = float(cap - floor)
    if room <= 0:
        return values.new_zeros(())
    kinks, order = torch.sort(room / values)
    v, c = values[order], counts[order]
    base = counts.sum() * floor
    capped = torch.cumsum(c, 0) * room  # from the terms at or below each kink
    rest = torch.flip(torch.cumsum(torch.flip(c * v, [0]), 0), [0]) - c * v  # over the later kinks
    at_kink = base + capped + kinks * rest  # the sum at lam = each kink (nondecreasing)
    i = torch.searchsorted(at_kink, torch.full((1,), total, dtype=at_kink.dtype, device=at_kink.device))[0]
    last = kinks.shape[0] - 1
    j = i.clamp(max=last)
    below = torch.where(j > 0, capped[(j - 1).clamp(min=0)], torch.zeros_like(base))
    lam = (total - base - below) / (rest[j] + c[j] * v[j])
    return torch.where(i > last, kinks[last], lam)


def commit_budget(logits: torch.Tensor, state: CausalState, tokens: int,
                  config: VCastConfig) -> tuple[int, torch.Tensor]:
    """Tokens for a commit of ``P`` frames whose budget logits are ``logits[P]`` (``c / tau``).

    A first commit gets ``total_budget(P)``; later ones ``round(sum of the commit's shares) - repay``,
    clamped to ``[P * m, P * N]`` (see the module docstring).

    Returns:
        ``(K, weights)``: the commit's token count (one host synchronisation reads it) and the weight
        histogram including this commit.
    """
    p, r, min_k = logits.shape[0], float(config.retain_ratio), config.min_tokens_per_frame
    e = torch.exp(logits.double())
    c = logits.double() * config.temperature
    bins = (c / CURVATURE_RANGE * WEIGHT_BINS).long().clamp(0, WEIGHT_BINS - 1)
    weights = state.weights.to(e.device).clone()
    weights[0].index_add_(0, bins, torch.ones_like(e))
    weights[1].index_add_(0, bins, e)
    frames = state.frames + p
    floor, k = min(min_k, tokens), total_budget(frames, tokens, r, min_k)
    if state.frames:
        seen = state.weights[0].to(e.device) > 0
        history = state.weights[1].to(e.device)[seen] / state.weights[0].to(e.device)[seen]
        values = torch.cat([history, e])
        counts = torch.cat([state.weights[0].to(e.device)[seen], torch.ones_like(e)])
        lam = water_level(values, counts, floor, tokens, float(k))
        share = torch.clamp(floor + lam * e, max=tokens).sum()
        before = total_budget(state.frames, tokens, r, min_k)
        debt = (state.spent - before) * min(1.0, p / REPAY_HORIZON)
        k = round(float(share)) - (math.ceil(debt) if debt > 0 else math.floor(debt))
    return min(max(k, p * floor), p * tokens), weights


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
    total, histogram = commit_budget(logits, state, n, config)
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
                        weights=histogram,
                        context=history[-keep_ctx:].clone(), tokens=n)
    return CausalStep(Selection(keep, budget, c, p, n), new_state, rank, logits, r)


def causal_select(features: torch.Tensor, config: VCastConfig | None = None, chunk: int = 1) -> Selection:
    """The causal rule on a whole clip fed as a stream, for benchmarks and tests.

    ``features[T, N, D]`` arrive in chunks of ``chunk`` frames; on each arrival the frames that were
    waiting are committed (those with :data:`LOOKAHEAD_FRAMES` successors by then), and at the end
    (a question) the rest is committed without lookahead: :class:`vcast.VideoStream`'s schedule.

    Returns:
        One :class:`Selection` over the ``T`` frames (the commits' selections laid end to end).
    """
    cfg = VCastConfig() if config is None else config
    check_stream_config(cfg)
    check_video(features)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk must be an int >= 1, got {chunk!r}")
    t, n, _ = features.shape
    look = LOOKAHEAD_FRAMES[cfg.curvature]
    state, steps, done, pending = CausalState(), [], 0, 0
    for start in range(0, t, chunk):
        fresh = min(chunk, t - start)
        ready = max(0, pending - max(0, look - fresh))
        if ready:
            ahead = features[done + ready: done + ready + look]
            step = causal_step(features[done:done + ready], state, trajectory(ahead), cfg)
            steps.append(step)
            state, done, pending = step.state, done + ready, pending - ready
        pending += fresh
    if pending:
        steps.append(causal_step(features[done:], state, None, cfg))
    sizes = torch.tensor([s.selection.num_frames for s in steps])
    offsets = (sizes.cumsum(0) - sizes).tolist()  # first frame of each commit
    keep = torch.cat([s.selection.keep_index + o * n for s, o in zip(steps, offsets)])
    budget = torch.cat([s.selection.frame_budget for s in steps])
    curvature = torch.cat([s.selection.curvature for s in steps])
    return Selection(keep, budget, curvature, t, n)
