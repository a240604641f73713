"""vcast.proxy.stats: Wilson intervals, the paired stratified bootstrap, retention intervals, verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from vcast.proxy.stats import (
    bootstrap_weights,
    paired_difference,
    retention_interval,
    verdict,
    wilson_interval,
)


def test_wilson_matches_known_values() -> None:
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=5e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=5e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=5e-4)
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=5e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def _pair(n: int = 240, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(n) < 0.7, rng.random(n) < 0.6, np.arange(n) % 8


def test_paired_difference_contains_the_difference_and_is_deterministic() -> None:
    a, b, strata = _pair()
    d = paired_difference(a, b, strata, n_boot=1000, seed=3)
    assert d["diff"] == pytest.approx(a.mean() - b.mean())
    assert d["lo"] < d["diff"] < d["hi"]
    assert paired_difference(a, b, strata, n_boot=1000, seed=3) == d
    assert paired_difference(a, b, strata, n_boot=1000, seed=4) != d
    # the same questions swapped: the mirrored interval
    m = paired_difference(b, a, strata, n_boot=1000, seed=3)
    assert (m["diff"], m["lo"], m["hi"]) == pytest.approx((-d["diff"], -d["hi"], -d["lo"]), abs=1e-6)


def test_paired_difference_of_identical_vectors_is_exactly_zero() -> None:
    a, _, strata = _pair()
    assert paired_difference(a, a.copy(), strata) == {"diff": 0.0, "lo": 0.0, "hi": 0.0}


def test_paired_difference_excludes_zero_for_a_clearly_better_vector() -> None:
    a, b, strata = _pair()
    better = a | (np.arange(len(a)) % 3 == 0)  # a, plus a third of the questions right
    d = paired_difference(better, a, strata)
    assert d["lo"] > 0 and verdict(d["lo"], d["hi"]) == ">"
    d = paired_difference(a, better, strata)
    assert d["hi"] < 0 and verdict(d["lo"], d["hi"]) == "<"


def test_bootstrap_weights_resample_within_each_stratum() -> None:
    strata = np.array(["s0:needle"] * 5 + ["s1:cuts"] * 3 + ["s0:order"] * 7)[np.random.default_rng(0).permutation(15)]
    w = bootstrap_weights(strata, n_boot=300, seed=0)
    assert w.shape == (300, 15) and (w >= 0).all() and (w == np.round(w)).all()
    for label, size in (("s0:needle", 5), ("s1:cuts", 3), ("s0:order", 7)):
        assert (w[:, strata == label].sum(axis=1) == size).all()
    assert np.array_equal(w, bootstrap_weights(list(strata), n_boot=300, seed=0))
    # every question is drawn once per replicate on average
    assert w.mean(axis=0) == pytest.approx(np.ones(15), abs=0.2)


def test_stratification_removes_between_stratum_variance() -> None:
    # a is right on every question of stratum "x" and wrong on every one of "y": stratified replicates keep
    # 50 questions of each, so the difference from all-wrong is exactly 0.5; unstratified it varies.
    a, b = np.r_[np.ones(50), np.zeros(50)], np.zeros(100)
    d = paired_difference(a, b, ["x"] * 50 + ["y"] * 50)
    assert d["lo"] == pytest.approx(0.5) and d["hi"] == pytest.approx(0.5)
    d = paired_difference(a, b, ["all"] * 100)
    assert d["lo"] < 0.45 and d["hi"] > 0.55


def test_retention_interval() -> None:
    unpruned, _, strata = _pair()
    pruned = unpruned & (np.arange(len(unpruned)) % 5 != 0)  # loses about a fifth of the right answers
    r = retention_interval(pruned, unpruned, strata, n_boot=1000)
    assert r["retention"] == pytest.approx(pruned.mean() / unpruned.mean())
    assert r["lo"] < r["retention"] < r["hi"] <= 1.0  # pruned right => unpruned right, so no replicate exceeds 1
    assert retention_interval(pruned, unpruned, strata, n_boot=1000) == r
    same = retention_interval(unpruned, unpruned, strata)
    assert (same["retention"], same["lo"], same["hi"]) == (1.0, 1.0, 1.0)
    assert retention_interval(pruned, np.zeros(len(pruned)), strata) == {"retention": None, "lo": None, "hi": None}


def test_verdict() -> None:
    assert verdict(0.01, 0.2) == ">"
    assert verdict(-0.2, -0.01) == "<"
    assert verdict(-0.1, 0.1) == "~"
    assert verdict(0.0, 0.0) == "~"


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError):
        paired_difference([1, 0], [1, 0, 1], [0, 0])
    with pytest.raises(ValueError):
        retention_interval([1, 0], [1, 1], [0])
