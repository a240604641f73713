"""`vcast bench accuracy` end to end on a tiny split (two seeds, pooled; --combine), and its argument errors.

The committed proxy weights may lag the question vocabulary, so these tests check structure and
consistency, never accuracy values.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vcast.cli import app
from vcast.errors import ConfigError
from vcast.proxy import tasks

runner = CliRunner()
TINY = ["bench", "accuracy", "--per-family", "1", "--methods", "vcast,random", "--ratios", "0.25,0.1"]


def _run(*args: str):
    result = runner.invoke(app, [*TINY, *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acc")
    out, png = tmp / "acc.json", tmp / "acc.png"
    result = _run("--seeds", "7,8", "--json", str(out), "--plot", str(png))
    return json.loads(out.read_text()), png, result.output


def test_bench_accuracy_pools_seeds_into_the_report(two_seeds) -> None:
    report, png, output = two_seeds
    assert report["seeds"] == [7, 8] and report["split"] == "test" and report["per_family"] == 1
    assert report["weights"] == "committed" and report["reproduce"] is None and report["n"] == 16
    assert set(report["unpruned"]) >= {"overall", "lo", "hi", "n", "families", "per_seed"}
    labels = {(r["method"], json.dumps(r["options"]), r["ratio"]) for r in report["results"]}
    assert ("vcast", "{}", 0.25) in labels and ("random", "{}", 0.1) in labels
    assert ("vcast", json.dumps({"token_curvature_weight": 1.0}), 0.1) in labels
    assert ("vcast", json.dumps({"reproduce": "authors"}), 0.25) in labels
    for row in report["results"]:
        if "not_runnable" in row:
            continue
        assert abs(row["kept_ratio"] - row["ratio"]) < 0.02
        assert row["lo"] <= row["overall"] <= row["hi"] and [p["seed"] for p in row["per_seed"]] == [7, 8]
        assert set(row) >= {"label", "overall", "retention", "retention_lo", "retention_hi", "families",
                            "family_retention"}
    assert [r["seed"] for r in report["per_seed"]] == [7, 8]
    for raw in report["per_seed"]:
        assert raw["question_family"] == [tasks.FAMILIES[i % 8] for i in range(8)]
        measured = [r for r in raw["results"] if "not_runnable" not in r]
        assert all(len(r["correct"]) == 8 and set(r["correct"]) <= {0, 1} for r in [raw["unpruned"], *measured])
        assert all(sum(r["correct"]) / 8 == pytest.approx(r["overall"]) for r in measured)
    # per ratio: the best vcast setting against random (the one baseline), and a ranking of all four settings
    assert sorted(c["ratio"] for c in report["comparisons"]) == [0.1, 0.25]
    assert all(c["baseline"] == "random" and c["verdict"] in "<>~" for c in report["comparisons"])
    assert set(report["rankings"]) == {"0.25", "0.1"}
    assert set(report["targets"]) == {"retention_025_every_seed", "best_vcast_ahead_at"}
    assert set(report["targets"]["best_vcast_ahead_at"]) == {"0.1"}
    assert "ranking r=0.1" in output and "Paired differences" in output
    assert png.stat().st_size > 10_000


def test_combining_single_seed_runs_equals_one_pooled_run(two_seeds, tmp_path) -> None:
    a, b, both = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "both.json"
    _run("--seed", "8", "--json", str(b))
    _run("--seed", "7", "--json", str(a))
    assert json.loads(a.read_text())["seeds"] == [7]
    result = runner.invoke(app, ["bench", "accuracy", "--combine", f"{b},{a}", "--json", str(both)])
    assert result.exit_code == 0, result.output
    assert json.loads(both.read_text()) == two_seeds[0]


def _error(*args: str) -> str:
    result = runner.invoke(app, ["bench", "accuracy", *args])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError), result.output
    return str(result.exception)


def test_bench_accuracy_rejects_bad_arguments() -> None:
    for args in (["--ratios", "0"], ["--ratios", "x"], ["--methods", "nope"], ["--split", "train"]):
        result = runner.invoke(app, ["bench", "accuracy", "--per-family", "1", *args])
        assert result.exit_code != 0
    assert "not both" in _error("--seed", "1", "--seeds", "2,3")
    for bad in ("x", "1,1", "-1", ","):
        assert "--seeds" in _error("--seeds", bad)


def test_bench_accuracy_rejects_bad_combine_files(two_seeds, tmp_path) -> None:
    report = two_seeds[0]
    assert "no such file" in _error("--combine", str(tmp_path / "missing.json"))
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    assert "not readable JSON" in _error("--combine", str(corrupt))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({k: v for k, v in report.items() if k != "per_seed"}))
    assert "per_seed" in _error("--combine", str(old))
    old.write_text(json.dumps({**report, "per_seed": [{"seed": "7"}]}))
    assert "per_seed entries" in _error("--combine", str(old))
    good, other = tmp_path / "good.json", tmp_path / "other.json"
    good.write_text(json.dumps(report))
    other.write_text(json.dumps({**report, "weights": "elsewhere"}))
    assert "run differently" in _error("--combine", f"{good},{other}")
    fewer = json.loads(json.dumps(report))
    raw = fewer["per_seed"] = fewer["per_seed"][:1]
    raw[0]["seed"], raw[0]["results"] = 9, raw[0]["results"][1:]
    other.write_text(json.dumps(fewer))
    assert "other settings" in _error("--combine", f"{good},{other}")
    assert "once" in _error("--combine", f"{good},{good}")
    assert "--seed" in _error("--combine", str(good), "--seeds", "1")
