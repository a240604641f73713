"""`vcast bench accuracy` end to end on a tiny split, and its argument errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vcast.cli import app
from vcast.proxy import tasks

runner = CliRunner()


def test_bench_accuracy_writes_the_report(tmp_path) -> None:
    out, png = tmp_path / "acc.json", tmp_path / "acc.png"
    result = runner.invoke(app, ["bench", "accuracy", "--per-family", "1", "--methods", "vcast,random",
                                 "--ratios", "0.25,0.1", "--seed", "7", "--json", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["seed"] == 7 and set(report["unpruned"]["families"]) == set(tasks.FAMILIES)
    labels = {(r["method"], json.dumps(r["options"]), r["ratio"]) for r in report["results"]}
    assert ("vcast", "{}", 0.25) in labels and ("random", "{}", 0.1) in labels
    assert ("vcast", json.dumps({"token_curvature_weight": 1.0}), 0.1) in labels
    for row in report["results"]:
        assert abs(row["kept_ratio"] - row["ratio"]) < 0.02
        assert set(row) >= {"method", "options", "ratio", "kept_ratio", "overall", "retention", "families"}
    assert png.stat().st_size > 10_000


def test_bench_accuracy_rejects_bad_arguments() -> None:
    for args in (["--ratios", "0"], ["--ratios", "x"], ["--methods", "nope"], ["--split", "train"]):
        result = runner.invoke(app, ["bench", "accuracy", "--per-family", "1", *args])
        assert result.exit_code != 0
