"""`vcast demo --stream` and `vcast bench stream` (small settings; the full run is in BENCHMARKS.md)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from vcast.cli import app
from vcast.errors import ConfigError

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_demo_stream_plays_the_clip_and_answers_mid_stream(tmp_path) -> None:
    result = runner.invoke(app, ["demo", "--stream", "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "asked mid-stream" in result.output and "at the end" in result.output
    assert "frame 15" in result.output and (tmp_path / "stream.png").stat().st_size > 10_000


def test_bench_stream_small_run(tmp_path) -> None:
    out = tmp_path / "stream.json"
    args = ["bench", "stream", "--parts", "coverage,accuracy,memory", "--seeds", "1", "--ratios", "0.25",
            "--clips", "6", "--frames", "100", "--cap", "16", "--json", str(out), "--plot", str(tmp_path / "s.png")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    data = json.loads(out.read_text())
    for est in ("vcast", "vcast-robust"):
        used = {r["rule"]: r["ratio_used"] for r in data["coverage"] if r["estimator"] == est}
        assert set(used) == {"stream", "offline", "uniform"} and len(set(used.values())) == 1  # matched counts
    kept = {r["rule"]: r["kept_ratio"] for r in data["accuracy"]["rows"]}
    assert len(set(kept.values())) == 1 and data["accuracy"]["clips"] == 6
    memory = data["memory"]
    assert memory["max_video_tokens_seen"] <= 16 and memory["evicted"] > 0
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_bench_stream_rejects_unknown_parts() -> None:
    result = runner.invoke(app, ["bench", "stream", "--parts", "speed"])
    assert isinstance(result.exception, ConfigError)
