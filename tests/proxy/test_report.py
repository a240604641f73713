"""vcast.proxy.report.pool on hand-made per-seed reports: pooled intervals, comparisons, rankings, targets."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from vcast.errors import ConfigError
from vcast.proxy.report import pool
from vcast.proxy.stats import wilson_interval
from vcast.proxy.tasks import FAMILIES

N = 200  # questions per seed (25 per family)
# questions right per seed: setting -> ratio -> count (None: the published code cannot run there).
# Right answers are nested (a prefix of one shuffled order per seed), so a gap of k questions is
# k questions one setting gets and the other misses.
COUNTS = {
    ("vcast", ()): {0.25: 176, 0.15: 150, 0.1: 160},
    ("vcast", (("reproduce", "authors"),)): {0.25: 176, 0.15: 150, 0.1: None},
    ("vidcom2", ()): {0.25: 150, 0.15: 160, 0.1: 140},
    ("uniform", ()): {0.25: 149, 0.15: 159, 0.1: 139},
    ("random", ()): {0.25: 60, 0.15: 55, 0.1: 50},
}
UNPRUNED = 180


def make_report(seed: int, vcast_025: int = 176) -> dict:
    order = np.random.default_rng(seed).permutation(N)

    def correct(k: int) -> list[int]:
        out = np.zeros(N, dtype=int)
        out[order[:k]] = 1
        return out.tolist()

    results = []
    for (method, options), by_ratio in COUNTS.items():
        for ratio, k in by_ratio.items():
            head = {"method": method, "options": dict(options), "ratio": ratio}
            if k is None:
                results.append({**head, "not_runnable": "the published code stops here"})
                continue
            if method == "vcast" and ratio == 0.25:  # the default and reproduce=authors alike
                k = vcast_025
            results.append({**head, "kept_ratio": ratio, "tokens_kept": int(ratio * 1000), "tokens_before": 1000,
                            "overall": k / N, "correct": correct(k)})
    return {"seed": seed, "split": "test", "question_family": [FAMILIES[i % 8] for i in range(N)],
            "unpruned": {"overall": UNPRUNED / N, "n": N, "correct": correct(UNPRUNED)}, "results": results}


def _row(pooled: dict, label: str, ratio: float) -> dict:
    return next(r for r in pooled["results"] if r["label"] == label and r["ratio"] == ratio)


def test_pool_accuracies_intervals_and_per_seed_values() -> None:
    pooled = pool([make_report(0), make_report(1, vcast_025=170)])
    assert pooled["seeds"] == [0, 1] and pooled["n"] == 2 * N
    base = pooled["unpruned"]
    assert base["overall"] == pytest.approx(0.9) and base["n"] == 2 * N
    assert (base["lo"], base["hi"]) == pytest.approx(wilson_interval(360, 400), abs=1e-6)
    assert [p["overall"] for p in base["per_seed"]] == [0.9, 0.9] and set(base["families"]) == set(FAMILIES)
    row = _row(pooled, "vcast", 0.25)
    assert row["overall"] == pytest.approx(346 / 400) and row["kept_ratio"] == 0.25
    assert (row["lo"], row["hi"]) == pytest.approx(wilson_interval(346, 400), abs=1e-6)
    assert row["retention"] == pytest.approx(346 / 360)
    assert row["retention_lo"] < row["retention"] < row["retention_hi"] <= 1.0
    assert [p["retention"] for p in row["per_seed"]] == pytest.approx([176 / 180, 170 / 180], abs=1e-6)
    assert set(row["family_retention"]) == set(FAMILIES)
    assert "not_runnable" in _row(pooled, "vcast(reproduce=authors)", 0.1)


def test_pool_rankings_comparisons_and_targets() -> None:
    pooled = pool([make_report(0), make_report(1, vcast_025=170)])
    assert pooled["rankings"] == {
        "0.25": "vcast ~ vcast(reproduce=authors) > vidcom2 ~ uniform > random",
        "0.15": "vidcom2 ~ uniform > vcast ~ vcast(reproduce=authors) > random",
        "0.1": "vcast > vidcom2 ~ uniform > random",
    }
    at = {(c["ratio"], c["baseline"]): c for c in pooled["comparisons"]}
    assert len(at) == 9 and {c["best"] for c in pooled["comparisons"]} == {"vcast"}
    assert at[0.1, "vidcom2"]["verdict"] == ">" and at[0.1, "vidcom2"]["diff"] == pytest.approx(40 / 400)
    assert at[0.15, "vidcom2"]["verdict"] == "<" and at[0.15, "uniform"]["verdict"] == "<"
    for c in pooled["comparisons"]:
        assert c["lo"] <= c["diff"] <= c["hi"]
    authors = pooled["authors_vs_default"]
    assert [(a["ratio"], a["verdict"], a["diff"]) for a in authors] == [(0.25, "~", 0.0), (0.15, "~", 0.0)]
    targets = pooled["targets"]
    assert targets["retention_025_every_seed"]["met"] is False  # seed 1 keeps 170 / 180 = 0.944
    assert [p["seed"] for p in targets["retention_025_every_seed"]["per_seed"]] == [0, 1]
    assert targets["best_vcast_ahead_at"] == {"0.15": False, "0.1": True}
    assert pool([make_report(0), make_report(1)])["targets"]["retention_025_every_seed"]["met"] is True


def test_pool_is_deterministic_and_independent_of_report_order() -> None:
    a, b = make_report(3), make_report(5)
    assert pool([a, b]) == pool([b, a]) == pool([copy.deepcopy(a), copy.deepcopy(b)])


def test_pool_leaves_out_targets_for_ratios_not_run() -> None:
    report = make_report(0)
    report["results"] = [r for r in report["results"] if r["ratio"] == 0.5 or r["method"] != "vidcom2"]
    report["results"] = [r for r in report["results"] if r["ratio"] != 0.25]
    assert pool([report])["targets"] == {"best_vcast_ahead_at": {"0.15": False, "0.1": True}}
    only_vcast = make_report(0)
    only_vcast["results"] = [r for r in only_vcast["results"] if r["method"] == "vcast" and r["ratio"] == 0.1]
    pooled = pool([only_vcast])
    assert pooled["targets"] == {} and pooled["comparisons"] == [] and pooled["rankings"] == {"0.1": "vcast"}


def test_pool_rejects_mismatched_or_incomplete_reports() -> None:
    with pytest.raises(ConfigError, match="once"):
        pool([make_report(0), make_report(0)])
    fewer = make_report(1)
    fewer["results"] = fewer["results"][1:]
    with pytest.raises(ConfigError, match="other settings"):
        pool([make_report(0), fewer])
    old = make_report(1)
    del old["results"][0]["correct"]
    with pytest.raises(ConfigError, match="correct"):
        pool([old])
    with pytest.raises(ConfigError):
        pool([])
