"""The coverage benchmark: metric definitions by hand, the runner over every registered method,
the CLI, and the shake-robust curvature's targets on a small suite."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import vcast.bench.coverage as cov
from vcast.bench.clips import Clip
from vcast.bench.coverage import (
    Variant,
    build_suite,
    check_targets,
    clip_metrics,
    default_variants,
    run_coverage,
    summarise,
)
from vcast.errors import ConfigError, InputError
from vcast.methods import list_methods


def _clip(kind: str, t: int = 4, **truth) -> Clip:
    return Clip(kind, np.zeros((t, 4, 4, 3), np.uint8), event_mask=np.zeros((t, 4, 4), bool), **truth)


def test_needle_metrics_by_hand() -> None:
    clip = _clip("needle", needle_frames=(2,))
    cells = np.zeros((4, 4), bool)
    cells[2, [1, 3]] = True  # two needle cells on frame 2
    keep = np.zeros((4, 4), bool)
    keep[:, 0] = True  # one non-needle token per frame
    m = clip_metrics(clip, keep, cells)
    assert m["needle_hit"] == 0.0 and m["needle_recall"] == 0.0 and m["ratio_used"] == 0.25
    keep[2, 3] = True
    m = clip_metrics(clip, keep, cells)
    assert m["needle_hit"] == 1.0 and m["needle_recall"] == 0.5
    assert math.isnan(m["event_recall"]) and math.isnan(m["cut_share"]) and math.isnan(m["shake_share"])


def test_event_recall_and_shares_by_hand() -> None:
    cells = np.zeros((4, 4), bool)
    cells[1, :2] = cells[2, :2] = True  # four object cells
    keep = np.zeros((4, 4), bool)
    keep[1, :3] = True  # frame 1 keeps 3 (2 of them object cells), frame 2 keeps 1 (not object)
    keep[2, 3] = True
    keep[0, 0] = keep[3, 0] = True
    m = clip_metrics(_clip("slide"), keep, cells)
    assert m["event_recall"] == 0.5
    # Budgets 1, 3, 1, 1 (mean 1.5): a cut at frame 1 has share 2, shake on frames 2-3 share 2/3.
    m = clip_metrics(_clip("shake", cut_frames=(1,), shake_frames=(2, 3)), keep, np.zeros((4, 4), bool))
    assert m["cut_share"] == pytest.approx(2.0) and m["shake_share"] == pytest.approx(2 / 3)
    assert math.isnan(m["event_recall"])


def test_summarise_ignores_metrics_that_do_not_apply() -> None:
    rows = [dict.fromkeys(cov.METRICS, math.nan) | {"ratio_used": 0.2} for _ in range(3)]
    rows[0]["needle_hit"], rows[1]["needle_hit"] = 1.0, 0.0
    out = summarise(rows)
    assert out["needle_hit"] == 0.5 and out["needle_hit_n"] == 2
    assert out["needle_hit_se"] == pytest.approx(0.5)  # std 0.707 over sqrt(2)
    assert out["per_clip"]["needle_hit"][:2] == [1.0, 0.0]
    assert math.isnan(out["cut_share"]) and out["cut_share_n"] == 0 and out["ratio_used"] == pytest.approx(0.2)


def test_default_variants_cover_every_registered_method() -> None:
    names = [v.name for v in default_variants()]
    assert names[: len(list_methods())] == list_methods()
    assert {"vcast", "vcast-robust", "vcast-robust+tok", "vcast-robust-auto"} <= set(names)
    assert [v.name for v in default_variants(["uniform", "vcast-robust-auto"])] == ["uniform", "vcast-robust-auto"]
    with pytest.raises(ConfigError, match="unknown method"):
        default_variants(["nope"])


@pytest.fixture(scope="module")
def tiny_suite():
    return build_suite(seeds=1, frames=8, size=(112, 112), grid=(7, 7))


def test_every_method_runs_on_the_suite(tiny_suite) -> None:
    rows = run_coverage(default_variants(), tiny_suite, ratios=(0.25,))
    assert [r for r in rows if "error" in r] == []
    by = {r["method"]: r for r in rows}
    assert set(list_methods()) <= set(by)
    for name in list_methods():  # fixed ratios are honoured (K = round(T*N*r), at least one per frame)
        assert by[name]["ratio_used"] == pytest.approx(0.25, abs=0.01), name
    assert by["uniform"]["cut_share"] == pytest.approx(1.0, abs=0.05)
    auto = by["vcast-robust-auto"]
    assert auto["ratio"] == "auto" and set(auto["ratio_by_kind"]) == {"cuts", "needle", "shake", "slide"}
    for key in cov.METRICS:
        assert 0.0 <= by["vcast"][key] < 10


def test_a_failing_method_is_reported_not_hidden(tiny_suite, monkeypatch) -> None:
    def boom(variant, suite, ratio):
        raise InputError("cannot prune this")

    monkeypatch.setattr(cov, "keep_masks", boom)
    (row,) = run_coverage([Variant("vcast", "vcast")], tiny_suite, ratios=(0.5,))
    assert row["error"] == "cannot prune this"


def test_check_targets() -> None:
    good = {"needle_hit": 1.0, "shake_share": 0.5, "cut_share": 2.0, "event_recall": 0.6}
    se = {f"{k}_se": 0.01 for k in good}
    rows = [{"method": "vcast-robust", "ratio": r, **good, **se, "per_clip": {"event_recall": [0.5, 0.7, math.nan]}}
            for r in (0.25, 0.1)]
    rows += [{"method": "uniform", "ratio": r, "event_recall": 0.7, "per_clip": {"event_recall": [0.7, 0.7, math.nan]}}
             for r in (0.25, 0.1)]
    res = check_targets(rows)
    assert len(res) == 8
    assert [c["met"] for c in res] == [True, True, True, False] * 2
    assert "-0.100 +- 0.100" in res[3]["target"] and res[3]["se"] == 0.01


def test_robust_curvature_targets_on_a_small_suite() -> None:
    # The budget targets for curvature="robust" (needle hit, shake and cut shares), on a
    # few clips; the published angle fails the shake target on the same clips.
    suite = build_suite(seeds=4, kinds=("needle", "shake", "cuts"))
    rows = run_coverage([Variant("vcast", "vcast"), Variant("vcast-robust", "vcast-robust")], suite,
                        ratios=(0.25, 0.1))
    by = {(r["method"], r["ratio"]): r for r in rows}
    for ratio in (0.25, 0.1):
        robust, angle = by["vcast-robust", ratio], by["vcast", ratio]
        assert robust["needle_hit"] >= 0.95 and robust["shake_share"] <= 1.0 and robust["cut_share"] >= 1.5
        assert angle["shake_share"] > 1.0 and angle["cut_share"] < robust["cut_share"]


def test_cli_writes_json_and_plot(tmp_path) -> None:
    from vcast.cli import app

    out, png = tmp_path / "cov.json", tmp_path / "cov.png"
    result = CliRunner().invoke(app, [
        "bench", "coverage", "--seeds", "1", "--frames", "8", "--size", "112x112", "--grid", "7x7",
        "--ratios", "0.5,0.25", "--methods", "vcast,vcast-robust,uniform", "--json", str(out), "--plot", str(png),
    ])
    assert result.exit_code == 0, result.output
    assert "needle" in result.output and "vcast-robust" in result.output
    data = json.loads(out.read_text())
    assert {(r["method"], r["ratio"]) for r in data["rows"]} == {
        (m, r) for m in ("vcast", "vcast-robust", "uniform") for r in (0.5, 0.25)}
    assert data["targets"] and png.stat().st_size > 10_000
    bad = CliRunner().invoke(app, ["bench", "coverage", "--ratios", "0.5,2"])
    assert bad.exit_code != 0 and "(0, 1]" in str(bad.exception)


def test_cli_quick_uses_fewer_clips_and_prints_the_key(tmp_path) -> None:
    from vcast.cli import app
    from vcast.cli.bench_coverage import QUICK_SEEDS

    result = CliRunner().invoke(app, [
        "bench", "coverage", "--quick", "--frames", "8", "--size", "112x112", "--grid", "7x7", "--ratios", "0.5",
        "--methods", "vcast", "--json", "-"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["seeds"] == QUICK_SEEDS  # --json -: stdout is pure JSON
    assert "needle hit: share of needle clips" in result.stderr  # the table and its key went to stderr
