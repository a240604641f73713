"""``vcast bench efficiency``: what pruning saves, analytic (real configs) and measured (scaled model)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from vcast.cli.app import bench_app
from vcast.cli.output import JSON_HELP


def _floats(text: str, name: str) -> tuple[float, ...]:
    from vcast.errors import ConfigError

    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--{name} takes comma-separated numbers, got {text!r}") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise ConfigError(f"--{name} values must be in (0, 1], got {text!r}")
    return values


ANALYTIC_KEY = ("Each cell is pruned / vanilla (below 1 saves): vision = vision-encoder FLOPs, LLM = LLM "
                "prefill FLOPs, total = both, KV cache = bytes of the KV cache after prefill. prune at: llm = "
                "after the encoder (the paper); vision:k = inside the encoder after block k.")
MEASURED_KEY = ("pruned / vanilla, medians of the interleaved repeats (below 1 saves): prefill = time to the "
                "first token (vision encoder + pruning + LLM prefill), generate = the whole generate() call, "
                "peak memory = peak resident memory the call adds. {clock} Post-encoder pruning cannot cut "
                "the vision encoder's time or its peak memory, only the LLM's share.")
CROSSOVER_KEY = ("One temporal patch (2 frames) at growing frame sizes, plus the clip above, at the same ratio. "
                 "The saving follows the video tokens' share of the prefill work (compare the analytic FLOPs): "
                 "selecting costs next to nothing, but with few video tokens there is little to remove. "
                 "'pays' = prefill at most {pays}x vanilla, clear of the repeats' noise.")
PAYS = 0.95  # a measured prefill ratio at or below this is a saving beyond the repeats' noise


def _print_analytic(rows: list[dict], method: str, out) -> None:
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
        caption=ANALYTIC_KEY,
        caption_justify="left",
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
    out.print(table)


def _clock_note(row: dict) -> str:
    if row.get("clock") == "cpu":
        return (f"Times are the process's CPU time ({row['threads']} torch thread(s)), so other load on the "
                "machine does not leak in; --clock wall for wall-clock.")
    return "Times are wall-clock."


def _print_measured(rows: list[dict], agreement: list[dict], out) -> None:
    from rich.table import Table

    console = out
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
            caption=MEASURED_KEY.format(clock=_clock_note(r0)),
            caption_justify="left",
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
            caption="Jaccard = |kept early & kept post| / |kept early | kept post| per clip (1 = the same tokens); "
            "frame-budget overlap = share of per-frame budgets in common; chance = the Jaccard of two random "
            "sets of the same size.",
            caption_justify="left",
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


def crossover_summary(rows: list[dict], pays: float = PAYS) -> dict:
    """Where post-encoder pruning starts to pay on the crossover clips: ``{"pays_from_tokens",
    "no_saving_up_to_tokens", "ratio"}`` (None where every / no clip pays)."""
    post = sorted((r for r in rows if r["mode"] == "post"), key=lambda r: r["visual_tokens"])
    paying = [r["visual_tokens"] for r in post if r["prefill_latency_ratio"] <= pays]
    first = paying[0] if paying else None
    below = [r["visual_tokens"] for r in post if first is None or r["visual_tokens"] < first]
    return {"pays_from_tokens": first, "no_saving_up_to_tokens": max(below) if below else None,
            "ratio": post[0]["ratio"] if post else None, "threshold": pays}


def _print_crossover(rows: list[dict], out) -> None:
    from rich.table import Table

    table = Table("video tokens", "frames", "size", "mode", "prefill", "prefill range", "FLOPs (analytic)",
                  title="Where pruning stops paying: small clips on the same model",
                  caption=CROSSOVER_KEY.format(pays=PAYS), caption_justify="left")
    for r in sorted(rows, key=lambda r: (r["visual_tokens"], r["mode"])):
        lo, hi = r["prefill_latency_ratio_range"]
        table.add_row(str(r["visual_tokens"]), str(r["frames"]), f"{r['size']}px", f"{r['mode']} ({r['prune_at']})",
                      f"{r['prefill_latency_ratio']:.3f}", f"{lo:.2f}-{hi:.2f}",
                      f"{r['analytic_total_prefill_flops_ratio']:.3f}")
    out.print(table)
    c = crossover_summary(rows)
    if c["pays_from_tokens"] is None:
        out.print(f"Post-encoder pruning at r={c['ratio']:g} saved nothing measurable on any of these clips.")
    elif c["no_saving_up_to_tokens"] is None:
        out.print(f"Post-encoder pruning at r={c['ratio']:g} paid on every clip here, from "
                  f"{c['pays_from_tokens']} video tokens up.")
    else:
        out.print(f"Post-encoder pruning at r={c['ratio']:g} pays from about {c['pays_from_tokens']} video tokens "
                  f"per clip on this model and machine; at {c['no_saving_up_to_tokens']} and fewer the saving is "
                  f"within {1 - c['threshold']:.0%} (noise). Real Video LLM prompts hold thousands of video tokens.")


@bench_app.command("efficiency")
def efficiency(
    json_path: str | None = typer.Option(None, "--json", metavar="PATH", help=JSON_HELP),
    quick: bool = typer.Option(False, "--quick", help="Half-size scaled model and an 8-frame clip: about "
                               "1.5 minutes on 2 idle CPU cores (measured; longer on a busy machine)."),
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
    clock: str = typer.Option("auto", "--clock", help="auto (CPU time on CPU, wall-clock on CUDA), cpu or wall."),
    measure_part: bool = typer.Option(True, "--measure/--no-measure", help="Run the measured part."),
    crossover_part: bool = typer.Option(
        True, "--crossover/--no-crossover", help="Also measure small clips, to show where pruning stops paying."
    ),
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
    run on this machine's CPU, and the same on clips of 4 to 196 video tokens (where pruning stops paying).
    """
    from vcast.cli.output import console, progress, to_stdout, write_json
    from vcast.efficiency.agreement import early_agreement, summarise_agreement
    from vcast.efficiency.measure import CROSSOVER_CLIPS, PRESETS, measure
    from vcast.efficiency.report import analytic_rows, plot

    out = console(stderr=to_stdout(json_path))
    started = time.perf_counter()
    measured, crossover, agreement_rows, agreement = [], [], [], []
    seconds = {}
    with progress() as bar:
        task = bar.add_task("analytic", total=None)

        def tell(msg: str) -> None:
            bar.update(task, description=msg)

        analytic = analytic_rows(
            ratios=_floats(ratios, "ratios"), methods=[m.strip() for m in methods.split(",") if m.strip()] or None,
            progress=lambda name: tell(f"analytic: {name}"),
        )
        seconds["analytic"] = time.perf_counter() - started
        if measure_part:
            preset = PRESETS["quick" if quick else "full"]
            main = (preset.frames, preset.size)
            clips = [main, *(c for c in CROSSOVER_CLIPS if crossover_part and c != main)]
            rows = measure(preset, _floats(measured_ratios, "measured-ratios"), method=method, repeats=repeats,
                           threads=threads, clock=clock, clips=clips, progress=lambda m: tell(f"measured: {m}"))
            measured = [r for r in rows if (r["frames"], r["size"]) == main]
            if crossover_part:  # the small clips and the main one, at the first measured ratio
                crossover = [r for r in rows if r["ratio"] == rows[0]["ratio"]]
            seconds["measured"] = time.perf_counter() - started - sum(seconds.values())
        if agreement_part:
            tell("agreement: early vs post-encoder selection on the coverage clips")
            agreement_rows = early_agreement(
                ratios=(0.25,) if quick else (0.5, 0.25, 0.1), seeds=(0,) if quick else (0, 1), method=method
            )
            agreement = summarise_agreement(agreement_rows)
            seconds["agreement"] = time.perf_counter() - started - sum(seconds.values())
    _print_analytic(analytic, method if any(r["method"] == method for r in analytic) else "vcast", out)
    _print_measured(measured, agreement, out)
    if crossover_part and crossover:
        _print_crossover(crossover, out)
    payload = {
        "analytic": analytic,
        "measured": measured,
        "crossover": crossover,
        "crossover_summary": crossover_summary(crossover) if crossover else None,
        "agreement": agreement,
        "agreement_per_clip": agreement_rows,
        "setup": {
            "quick": quick,
            "method": method,
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
        },
    }
    write_json(json_path, payload, indent=1)
    if plot_path is not None:
        plot(analytic, measured, str(plot_path), method=method)
        typer.echo(f"wrote {plot_path}", err=True)
