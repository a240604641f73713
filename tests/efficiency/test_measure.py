"""Measured harness, agreement and the ``vcast bench efficiency`` command (small sizes only)."""

from __future__ import annotations

import json

import pytest
import torch

from vcast.efficiency.measure import ScaledPreset, _PeakMemory, measure
from vcast.errors import ConfigError

TINY = ScaledPreset("tiny", 64, 128, 2, 4, (1, 2, 3), 128, 256, 2, 1, 2, frames=8, size=128, max_new_tokens=3)
MEASURED_KEYS = {
    "device",
    "mode",
    "ratio",
    "prefill_latency_ratio",
    "generate_latency_ratio",
    "peak_memory_ratio",
}
ANALYTIC_KEYS = {
    "model",
    "frames",
    "method",
    "ratio",
    "vision_flops_ratio",
    "llm_prefill_flops_ratio",
    "total_prefill_flops_ratio",
    "kv_cache_ratio",
}


def test_peak_memory_sees_a_transient_buffer():
    with _PeakMemory("cpu") as mem:
        x = torch.ones(16 * 2**20)  # 64 MiB, freed before the block ends
        del x
    assert 60 * 2**20 < mem.peak < 200 * 2**20


def test_measure_rows_on_a_tiny_preset():
    rows = measure(TINY, ratios=(1.0, 0.5), repeats=1)
    assert [(r["mode"], r["ratio"]) for r in rows] == [
        ("post", 1.0),
        ("early", 1.0),
        ("post", 0.5),
        ("early", 0.5),
    ]
    for r in rows:
        assert set(r) >= MEASURED_KEYS and r["device"] == "cpu"
        assert r["prefill_latency_ratio"] > 0 and r["generate_latency_ratio"] > 0
    full = [r for r in rows if r["ratio"] == 1.0]
    assert all(r["kept_visual_tokens"] == r["visual_tokens"] == 64 for r in full)
    early = [r for r in rows if r["mode"] == "early"]
    assert all(r["prune_at"] == "vision:0" for r in early)
    assert early[1]["analytic_vision_flops_ratio"] < 1.0 and early[0]["analytic_vision_flops_ratio"] == 1.0
    with pytest.raises(ConfigError):
        measure(TINY, modes=("late",))


def test_agreement_is_one_when_nothing_is_pruned_and_bounded_otherwise():
    from vcast.efficiency.agreement import early_agreement, summarise_agreement

    rows = early_agreement(ratios=(1.0, 0.25), kinds=["cuts"], seeds=(0,), frames=16, size=64, vision_depth=4)
    summary = {r["ratio"]: r for r in summarise_agreement(rows)}
    assert summary[1.0]["jaccard"] == 1.0 and summary[1.0]["frame_budget_overlap"] == 1.0
    assert 0.0 <= summary[0.25]["jaccard"] <= 1.0 and summary[0.25]["random_jaccard"] == pytest.approx(
        0.25 / 1.75
    )


def test_analytic_rows_cover_methods_and_pruning_points():
    from vcast.efficiency.report import analytic_rows

    rows = analytic_rows(
        models=["qwen3-vl-8b", "qwen2.5-vl-7b"], frames=(32,), ratios=(0.25,), methods=["vcast", "pool"]
    )
    points = {(r["model"], r["method"], r["prune_at"]) for r in rows}
    assert points == {
        ("qwen3-vl-8b", "vcast", "llm"),
        ("qwen3-vl-8b", "vcast", "vision:6"),
        ("qwen3-vl-8b", "pool", "llm"),
        ("qwen2.5-vl-7b", "vcast", "llm"),
        ("qwen2.5-vl-7b", "pool", "llm"),
    }
    assert all(set(r) >= ANALYTIC_KEYS for r in rows)


def test_cli_writes_the_json_schema_and_plot(tmp_path):
    from typer.testing import CliRunner

    from vcast.cli import app

    out, png = tmp_path / "eff.json", tmp_path / "eff.png"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "efficiency",
            "--no-measure",
            "--no-agreement",
            "--ratios",
            "0.25",
            "--methods",
            "vcast,pool",
            "--json",
            str(out),
            "--plot",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data) >= {"analytic", "measured"} and data["measured"] == []
    row = next(
        r
        for r in data["analytic"]
        if r["model"] == "qwen3-vl-8b" and r["frames"] == 64 and r["method"] == "vcast"
    )
    assert set(row) >= ANALYTIC_KEYS and row["ratio"] == 0.25
    assert png.stat().st_size > 10_000


def test_measure_several_clips_on_one_model_with_the_cpu_clock():
    rows = measure(TINY, ratios=(0.5,), modes=("post",), repeats=1, clips=[(2, 64), (4, 128)])
    assert [(r["frames"], r["size"]) for r in rows] == [(2, 64), (4, 128)]
    assert rows[0]["visual_tokens"] < rows[1]["visual_tokens"]
    assert all(r["clock"] == "cpu" and r["prefill_latency_ratio"] > 0 for r in rows)
    with pytest.raises(ConfigError, match="clock"):
        measure(TINY, clock="sundial")


def test_crossover_summary_finds_where_pruning_starts_to_pay():
    from vcast.cli.bench_efficiency import crossover_summary

    def row(tokens, ratio):
        return {"mode": "post", "visual_tokens": tokens, "prefill_latency_ratio": ratio, "ratio": 0.25}

    rows = [row(4, 0.99), row(16, 0.97), row(49, 0.9), row(196, 0.75), {**row(196, 0.4), "mode": "early"}]
    assert crossover_summary(rows) == {"pays_from_tokens": 49, "no_saving_up_to_tokens": 16, "ratio": 0.25,
                                       "threshold": 0.95}
    assert crossover_summary([row(4, 0.9)])["no_saving_up_to_tokens"] is None
    assert crossover_summary([row(4, 1.01)])["pays_from_tokens"] is None
