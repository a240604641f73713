"""``vcast bench efficiency``: what pruning saves, analytic (real configs) and measured (scaled model)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from vcast.cli.app import bench_app


def _floats(text: str, name: str) -> tuple[float, ...]:
    from vcast.errors import ConfigError

    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--{name} takes comma-separated numbers, got {text!r}") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise ConfigError(f"--{name} values must be in (0, 1], got {text!r}")
    return values


def _print_analytic(rows: list[dict], method: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "model",
        "frames",
        "ratio",
        "prune at",
        "vision",
        "LLM",
        "total",
        "KV cache",
        title=f"Analytic prefill cost, pruned / vanilla ({method}, 448x448)",
    )
    for r in rows:
        if r["method"] != method:
            continue
        table.add_row(
            r["model"],
            str(r["frames"]),
            f"{r['ratio']:g}",
            r["prune_at"],
            *(
                f"{r[k]:.3f}"
                for k in (
                    "vision_flops_ratio",
                    "llm_prefill_flops_ratio",
                    "total_prefill_flops_ratio",
                    "kv_cache_ratio",
                )
            ),
        )
    Console().print(table)


def _print_measured(rows: list[dict], agreement: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if rows:
        r0 = rows[0]
        table = Table(
            "mode",
            "prune at",
            "ratio",
            "prefill",
            "generate",
            "peak memory",
            "FLOPs (analytic)",
            title=f"Measured, pruned / vanilla: {r0['model']}, {r0['frames']} frames {r0['size']}px, "
            f"{r0['visual_tokens']} video tokens, {r0['device']} {r0['dtype']}",
        )
        for r in rows:
            mem = "n/a" if r["peak_memory_ratio"] is None else f"{r['peak_memory_ratio']:.3f}"
            table.add_row(
                r["mode"],
                r["prune_at"],
                f"{r['ratio']:g}",
                f"{r['prefill_latency_ratio']:.3f}",
                f"{r['generate_latency_ratio']:.3f}",
                mem,
                f"{r['analytic_total_prefill_flops_ratio']:.3f}",
            )
        console.print(table)
    if agreement:
        table = Table(
            "ratio",
            "clips",
            "Jaccard",
            "frame-budget overlap",
            "chance Jaccard",
            title="Early vs post-encoder selection (coverage clips, tiny Qwen3-VL)",
        )
        for r in agreement:
            table.add_row(
                f"{r['ratio']:g}",
                str(r["clips"]),
                f"{r['jaccard']:.3f}",
                f"{r['frame_budget_overlap']:.3f}",
                f"{r['random_jaccard']:.3f}",
            )
        console.print(table)


@bench_app.command("efficiency")
def efficiency(
    json_path: Path | None = typer.Option(None, "--json", help="Write all rows as JSON to this file."),
    quick: bool = typer.Option(False, "--quick", help="Small scaled model and clip (measured part < 2 min)."),
    plot_path: Path | None = typer.Option(None, "--plot", help="Write a PNG of both parts."),
    method: str = typer.Option(
        "vcast", "--method", help="Method of the measured part and of the printed table."
    ),
    ratios: str = typer.Option("0.5,0.25,0.15,0.1", "--ratios", help="Analytic retain ratios."),
    methods: str = typer.Option(
        "", "--methods", help="Comma-separated methods of the analytic part (default: all)."
    ),
    measured_ratios: str = typer.Option(
        "0.25", "--measured-ratios", help="Retain ratios measured on the scaled model."
    ),
    repeats: int = typer.Option(
        2, "--repeats", min=1, help="Interleaved repeats per measured variant (medians)."
    ),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads for the measured part."),
    measure_part: bool = typer.Option(True, "--measure/--no-measure", help="Run the measured part."),
    agreement_part: bool = typer.Option(
        True,
        "--agreement/--no-agreement",
        help="Jaccard of early vs post-encoder selection on the coverage clips.",
    ),
) -> None:
    """Prefill FLOPs / KV-cache savings of real Video LLM configs, and measured latency and memory ratios.

    Analytic: Qwen3-VL-2B/4B/8B/32B, Qwen3-VL-30B-A3B, Qwen2.5-VL-7B and LLaVA-OV-7B at 32 and 64 frames
    (448x448), every registered method, pruning after the encoder (llm) and, where sound, inside it
    (vision:k). Measured: a scaled-down random Qwen3-VL, vanilla vs post-encoder vs early pruning in one
    run on this machine's CPU.
    """
    from vcast.efficiency.agreement import early_agreement, summarise_agreement
    from vcast.efficiency.measure import measure
    from vcast.efficiency.report import analytic_rows, plot

    started = time.perf_counter()
    analytic = analytic_rows(
        ratios=_floats(ratios, "ratios"), methods=[m.strip() for m in methods.split(",") if m.strip()] or None
    )
    _print_analytic(analytic, method if any(r["method"] == method for r in analytic) else "vcast")
    seconds = {"analytic": time.perf_counter() - started}
    measured, agreement_rows, agreement = [], [], []
    if measure_part:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task("measuring", total=None)
            measured = measure(
                "quick" if quick else "full",
                _floats(measured_ratios, "measured-ratios"),
                method=method,
                repeats=repeats,
                threads=threads,
                progress=lambda msg: bar.update(task, description=msg),
            )
        seconds["measured"] = time.perf_counter() - started - sum(seconds.values())
    if agreement_part:
        agreement_rows = early_agreement(
            ratios=(0.25,) if quick else (0.5, 0.25, 0.1), seeds=(0,) if quick else (0, 1), method=method
        )
        agreement = summarise_agreement(agreement_rows)
        seconds["agreement"] = time.perf_counter() - started - sum(seconds.values())
    _print_measured(measured, agreement)
    if json_path is not None:
        payload = {
            "analytic": analytic,
            "measured": measured,
            "agreement": agreement,
            "agreement_per_clip": agreement_rows,
            "setup": {
                "quick": quick,
                "method": method,
                "seconds": {k: round(v, 1) for k, v in seconds.items()},
            },
        }
        json_path.write_text(json.dumps(payload, indent=1))
        typer.echo(f"wrote {json_path}")
    if plot_path is not None:
        plot(analytic, measured, str(plot_path), method=method)
        typer.echo(f"wrote {plot_path}")
