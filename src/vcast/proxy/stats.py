"""Confidence intervals for the accuracy benchmark (pure numpy).

* :func:`wilson_interval`: the Wilson score interval of a binomial proportion (one accuracy).
* :func:`paired_difference`: accuracy of A minus accuracy of B on the SAME questions, with a paired
  bootstrap CI that resamples questions within each stratum (e.g. seed x question family), so every
  replicate keeps the design's balance.
* :func:`retention_interval`: pruned accuracy over unpruned accuracy, bootstrapped the same way.
* :func:`verdict`: ``">"``, ``"<"`` or ``"~"`` from an interval of a difference.

Bootstrap replicates are drawn as resampling counts: ``weights[b, i]`` is how often question ``i``
is drawn in replicate ``b`` (a multinomial per stratum, which is exactly resampling the stratum's
questions with replacement), so a replicate's mean is one matrix-vector product.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

CI_LEVEL = 0.95


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of ``k`` successes in ``n`` trials (``z`` = 1.96: 95%).

    Returns ``(lo, hi)`` in [0, 1]; ``(0.0, 1.0)`` for ``n == 0`` (nothing is known).
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p, z2 = k / n, z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, float(center - half)), min(1.0, float(center + half))


def _codes(strata: Sequence) -> np.ndarray:
    """Stratum labels (ints or strings), shape ``(n,)`` -> integer codes ``0..s-1``, shape ``(n,)``."""
    return np.unique(np.asarray(strata), return_inverse=True)[1].reshape(-1)


def bootstrap_weights(strata: Sequence, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Resampling counts of a stratified bootstrap, shape ``(n_boot, n)`` (float32).

    Row ``b`` holds how often each of the ``n`` questions is drawn in replicate ``b``; within every
    stratum the counts sum to the stratum's size (questions are resampled with replacement inside
    their stratum only). Deterministic for given ``strata``, ``n_boot`` and ``seed``; the result is
    cached (read-only), since every comparison of one benchmark shares its strata.
    """
    codes = _codes(strata)
    return _weights(tuple(codes.tolist()), int(n_boot), int(seed))


@lru_cache(maxsize=2)
def _weights(codes: tuple[int, ...], n_boot: int, seed: int) -> np.ndarray:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    codes_arr = np.asarray(codes, dtype=np.int64)
    rng = np.random.default_rng(seed)
    out = np.zeros((n_boot, len(codes_arr)), dtype=np.float32)
    for code in range(int(codes_arr.max(initial=-1)) + 1):
        members = np.flatnonzero(codes_arr == code)
        m = len(members)
        out[:, members] = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot)
    out.setflags(write=False)
    return out


def _check(*vectors: np.ndarray, strata: Sequence) -> int:
    n = len(vectors[0])
    if n == 0:
        raise ValueError("no questions")
    if any(len(v) != n for v in vectors) or len(strata) != n:
        raise ValueError(f"vectors and strata must have the same length, got {[len(v) for v in vectors]} "
                         f"and {len(strata)}")
    return n


def _percentiles(reps: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CI_LEVEL) / 2
    lo, hi = np.nanpercentile(reps, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_difference(a: Sequence, b: Sequence, strata: Sequence, n_boot: int = 2000, seed: int = 0) -> dict:
    """``mean(a) - mean(b)`` with a paired, stratified bootstrap 95% CI.

    Args:
        a, b: per-question correctness (bool or 0/1), shape ``(n,)``, the same questions in the same order.
        strata: a label per question, shape ``(n,)`` (e.g. ``"seed:family"``); questions are resampled
            within their stratum, and ``a`` and ``b`` always with the same draws.
        n_boot: bootstrap replicates.
        seed: seeds the resampling (same inputs and seed: same interval).

    Returns:
        ``{"diff", "lo", "hi"}`` (floats).
    """
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    n = _check(a, b, strata=strata)
    reps = bootstrap_weights(strata, n_boot, seed) @ (a - b) / n
    lo, hi = _percentiles(reps)
    return {"diff": float(a.mean() - b.mean()), "lo": lo, "hi": hi}


def retention_interval(pruned: Sequence, unpruned: Sequence, strata: Sequence, n_boot: int = 2000,
                       seed: int = 0) -> dict:
    """``mean(pruned) / mean(unpruned)`` with a paired, stratified bootstrap 95% CI.

    Args:
        pruned, unpruned: per-question correctness, shape ``(n,)``, the same questions.
        strata, n_boot, seed: as in :func:`paired_difference` (both vectors use the same draws).

    Returns:
        ``{"retention", "lo", "hi"}``; all None when the unpruned model gets nothing right.
        Replicates whose unpruned mean is 0 are left out of the percentiles.
    """
    p, u = np.asarray(pruned, dtype=np.float32), np.asarray(unpruned, dtype=np.float32)
    _check(p, u, strata=strata)
    if u.sum() == 0:
        return {"retention": None, "lo": None, "hi": None}
    w = bootstrap_weights(strata, n_boot, seed)
    num, den = w @ p, w @ u
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    lo, hi = _percentiles(reps)
    return {"retention": float(p.mean() / u.mean()), "lo": lo, "hi": hi}


def verdict(lo: float, hi: float) -> str:
    """``">"`` if the interval of a difference is above 0, ``"<"`` if below, ``"~"`` if it holds 0."""
    if lo > 0:
        return ">"
    if hi < 0:
        return "<"
    return "~"
