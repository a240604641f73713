"""The CLI and the API agree: ``--retain-ratio auto`` works for every method exactly as
``make_config(method, retain_ratio="auto")`` does, a bad value is rejected with the API's message,
and the benchmarks' ``--reproduce`` flag runs the reproduced code next to vcast's default."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import vcast
from vcast.cli import app
from vcast.errors import ConfigError
from vcast.testing import random_video
from vcast.video import load_video, write_video
from vcast.viz import pixel_selection

runner = CliRunner()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("auto") / "clip.mp4", random_video(10, 64, 96, seed=3, motion=3.0), fps=5)


@pytest.mark.parametrize("method", vcast.list_methods())
def test_viz_auto_equals_the_api(clip, tmp_path, method) -> None:
    result = runner.invoke(app, ["viz", "--video", str(clip), "--out", str(tmp_path / "k.png"), "--num-frames", "8",
                                 "--method", method, "--retain-ratio", "auto"])
    assert result.exit_code == 0, (result.output, result.exception)
    frames, _ = load_video(clip, num_frames=8)
    sel, _ = pixel_selection(frames, "auto", method)
    assert f"{sel.num_kept}/48 tokens kept, per time step {sel.frame_budget.tolist()}" in result.stdout
    assert vcast.make_config(method, retain_ratio="auto").is_auto


def test_bad_ratio_gets_the_same_error_from_cli_and_api(clip, tmp_path) -> None:
    with pytest.raises(ConfigError) as api:
        vcast.make_config("evs", retain_ratio="often")
    result = runner.invoke(app, ["viz", "--video", str(clip), "--out", str(tmp_path / "k.png"), "--method", "evs",
                                 "--retain-ratio", "often"])
    assert result.exit_code != 0 and str(result.exception) == str(api.value)
    for bad in ("0", "1.5", "nan"):
        result = runner.invoke(app, ["viz", "--video", str(clip), "--out", str(tmp_path / "k.png"),
                                     "--retain-ratio", bad])
        assert isinstance(result.exception, ConfigError), bad


def test_bench_coverage_reproduce_rows(tmp_path) -> None:
    out = tmp_path / "cov.json"
    result = runner.invoke(app, ["bench", "coverage", "--seeds", "1", "--frames", "8", "--size", "112x112",
                                 "--grid", "7x7", "--ratios", "0.5,0.1", "--methods", "dycoke,vcast",
                                 "--reproduce", "authors", "--json", str(out)])
    assert result.exit_code == 0, result.output
    rows = {(r["method"], r["ratio"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {(m, r) for m in ("dycoke", "dycoke[authors]", "vcast", "vcast[authors]") for r in (0.5, 0.1)}
    assert "1/4" in rows["dycoke[authors]", 0.1]["not_runnable"]  # not a failure
    assert rows["dycoke[authors]", 0.5]["ratio_used"] != rows["dycoke", 0.5]["ratio_used"]
    assert "published code cannot run here" in result.output and "dycoke[authors]" in result.output
    bad = runner.invoke(app, ["bench", "coverage", "--methods", "random", "--reproduce", "authors"])
    assert bad.exit_code != 0 and "no reproduce='authors' mode" in str(bad.exception)


def test_bench_accuracy_reproduce_rows(tmp_path) -> None:
    out = tmp_path / "acc.json"
    result = runner.invoke(app, ["bench", "accuracy", "--per-family", "1", "--methods", "evs,vidcom2",
                                 "--reproduce", "vllm", "--ratios", "0.25", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["reproduce"] == "vllm"
    labels = {(r["method"], json.dumps(r["options"])) for r in report["results"]}
    assert labels == {(m, o) for m in ("evs", "vidcom2") for o in ("{}", json.dumps({"reproduce": "vllm"}))}
    assert all("overall" in r for r in report["results"])
