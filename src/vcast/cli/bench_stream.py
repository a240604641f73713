"""``vcast bench stream``: the causal rule on live streams (see :mod:`vcast.bench.stream`)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import typer

from vcast.cli.app import bench_app
from vcast.cli.bench_coverage import _floats, _json_safe
from vcast.cli.output import JSON_HELP
from vcast.errors import ConfigError

PARTS = ("coverage", "accuracy", "latency", "memory")


def _cell(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


@bench_app.command("stream")
def stream_bench(
    quick: bool = typer.Option(False, "--quick", help="Few clips, short streams (a few minutes on one core)."),
    parts: str = typer.Option(",".join(PARTS), "--parts", help=f"Comma-separated parts to run: {', '.join(PARTS)}."),
    ratios: str = typer.Option("0.5,0.25,0.1", "--ratios", help="Comma-separated retain ratios (coverage, accuracy)."),
    seeds: int = typer.Option(None, "--seeds", min=1, help="Coverage clips per kind (default 8, quick 2)."),
    clips: int = typer.Option(None, "--clips", min=6, help="Proxy test clips (default 60, quick 24)."),
    chunk: int = typer.Option(1, "--chunk", min=1, help="LLM frames per chunk of the coverage streams."),
    frames: int = typer.Option(None, "--frames", min=100, help="Frames of the memory stream (default 2000, quick 400)."),
    cap: int = typer.Option(None, "--cap", min=16, help="max_video_tokens of the memory stream (default 256, quick 64)."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads (timings are ratios in one run)."),
    json_path: str | None = typer.Option(None, "--json", metavar="PATH", help=JSON_HELP),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of coverage, accuracy, latency and memory."),
) -> None:
    """Causal V-CAST on a live stream vs offline V-CAST and uniform at the same token counts; add_frames
    latency vs re-prefilling everything seen; memory of a long capped stream."""
    import torch
    from rich.table import Table

    from vcast.bench import stream as bench
    from vcast.cli.output import console, to_stdout, write_json
    from vcast.cli.output import progress as progress_bar

    chosen = [p.strip() for p in parts.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown or not chosen:
        raise ConfigError(f"--parts must name some of {list(PARTS)}, got {parts!r}")
    ratio_list = _floats(ratios, "--ratios")
    if quick:
        ratio_list = ratio_list if ratios != "0.5,0.25,0.1" else [0.25]
    torch.set_num_threads(threads)
    seeds = seeds or (2 if quick else 8)
    clips = clips or (24 if quick else 60)
    frames = frames or (400 if quick else 2000)
    cap = cap or (64 if quick else 256)
    checkpoints = (64, 256) if quick else (64, 256, 1024)
    result: dict = {"quick": quick, "threads": threads, "ratios": ratio_list, "command": " ".join(["vcast", *sys.argv[1:]])}
    out = console(stderr=to_stdout(json_path))
    model = processor = None
    with torch.no_grad(), progress_bar() as progress:
        task = progress.add_task("stream benchmark", total=None)

        def step(label: str) -> None:
            progress.update(task, description=label)

        if "coverage" in chosen:
            from vcast.bench.coverage import build_suite

            step("building clips")
            suite = build_suite(seeds=seeds, frames=32)
            result["coverage"] = bench.coverage_rows(suite, ratio_list, chunk=chunk, progress=step)
            result["coverage_setup"] = {"seeds": seeds, "frames": 32, "chunk": chunk}
        if set(chosen) & {"accuracy", "latency", "memory"}:
            from vcast.proxy.model import build_processor, load_model

            model, processor = load_model(), build_processor()
        if "accuracy" in chosen:
            from vcast.proxy import tasks

            test = tasks.make_split("test", 0, clips)
            result["accuracy"] = bench.accuracy_rows(model, processor, test, ratio_list, progress=step)
        if "latency" in chosen:
            result["latency"] = bench.latency_rows(model, processor, checkpoints, repeats=3 if quick else 5,
                                                   progress=step)
        if "memory" in chosen:
            result["memory"] = bench.memory_run(model, processor, frames=frames, cap=cap, progress=step)

    if "coverage" in result:
        t = Table(title=f"coverage at matched token counts ({seeds} clips per kind, 32 frames, chunks of {chunk})")
        for col in ("estimator", "ratio", "rule", "ratio used", "needle hit", "needle recall", "event recall",
                    "cut share", "shake share"):
            t.add_column(col, justify="left" if col in ("estimator", "rule") else "right")
        for r in result["coverage"]:
            t.add_row(r["estimator"], str(r["ratio"]), r["rule"], _cell(r["ratio_used"]), _cell(r["needle_hit"]),
                      _cell(r["needle_recall"]), _cell(r["event_recall"]), _cell(r["cut_share"]),
                      _cell(r["shake_share"]))
        out.print(t)
    if "accuracy" in result:
        acc = result["accuracy"]
        t = Table(title=f"proxy accuracy, question after the clip ({acc['clips']} test clips; unpruned "
                        f"{acc['unpruned']['overall']:.3f})")
        for col in ("ratio", "rule", "kept ratio", "accuracy", "retention"):
            t.add_column(col, justify="right")
        for r in acc["rows"]:
            t.add_row(str(r["ratio"]), r["rule"], _cell(r["kept_ratio"]), _cell(r["overall"]), _cell(r["retention"]))
        out.print(t)
    if "latency" in result:
        t = Table(title="per-chunk latency: add_frames (one temporal patch) vs re-running everything seen")
        for col in ("frames", "add_frames s", "offline full s", "offline prefill s", "full / stream",
                    "prefill / stream"):
            t.add_column(col, justify="right")
        for r in result["latency"]:
            t.add_row(str(r["frames"]), f"{r['add_frames_s']:.4f}", f"{r['offline_full_s']:.4f}",
                      f"{r['offline_prefill_s']:.4f}", f"{r['full_over_stream']:.1f}x", f"{r['prefill_over_stream']:.1f}x")
        out.print(t)
    if "memory" in result:
        m = result["memory"]
        out.print(f"memory: {m['frames']} frames at {m['size']}x{m['size']}, max_video_tokens={m['cap']}: at most "
                  f"{m['max_video_tokens_seen']} video tokens and {m['max_cache_length']} cache slots; resident memory "
                  f"grew {m['rss_growth_after_warmup_mb']} MiB after frame {m['warmup_frames']} "
                  f"({m['samples'][0]['rss_mb']:.0f} MiB at frame {m['samples'][0]['frames']}, "
                  f"{m['samples'][-1]['rss_mb']:.0f} MiB at the end); {m['evicted']} tokens evicted")
    write_json(json_path, _json_safe(result), indent=1)
    if plot is not None:
        bench.plot(result, plot)
