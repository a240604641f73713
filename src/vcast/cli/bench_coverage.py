"""``vcast bench coverage``: the model-free coverage benchmark (see :mod:`vcast.bench.coverage`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from vcast.cli.app import bench_app
from vcast.cli.output import JSON_HELP
from vcast.errors import ConfigError

COLUMNS = [
    ("needle_hit", "needle hit"),
    ("needle_recall", "needle recall"),
    ("event_recall", "event recall"),
    ("cut_share", "cut share"),
    ("shake_share", "shake share"),
    ("ratio_used", "ratio used"),
]

# The key printed under the table (the metrics are defined exactly in vcast.bench.coverage).
KEY = ("needle hit: share of needle clips where a kept token lies on the one-frame insert; needle recall: "
       "share of the insert's tokens kept; event recall: share of a sliding object's tokens kept over all "
       "frames; cut share / shake share: tokens kept on the first frame of each new shot / on shaken frames, "
       "relative to an average frame (1.0 = average: cuts deserve more, shake no more); ratio used: share of "
       "all tokens kept. Higher is better except shake share; '-': the method could not run.")
QUICK_SEEDS = 4


# V-CAST rows stand out: the paper in black, the robust curvature and its extensions in red.
VCAST_STYLES = {
    "vcast": {"lw": 2.4, "color": "black"},
    "vcast-robust": {"lw": 2.4, "color": "tab:red"},
    "vcast-robust+tok": {"lw": 2.0, "color": "tab:red", "ls": "--"},
    "vcast-robust-auto": {"color": "tab:red"},
}


def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise ConfigError(f"{name} must be numbers in (0, 1], got {text!r}")
    return values


def _pair(text: str, name: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        a, b = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{name} must look like 224x224, got {text!r}") from None
    return a, b


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _cell(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def plot_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """One panel per metric, value vs retain ratio, one line per method (adaptive-ratio variants
    as single points at the ratio they used)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vcast.bench.coverage import is_measured

    metrics = [c for c in COLUMNS if c[0] != "ratio_used"]
    fig, grid_axes = plt.subplots(2, 3, figsize=(14, 8.5))
    axes = grid_axes.ravel()
    methods = list(dict.fromkeys(r["method"] for r in rows if is_measured(r)))
    cmap = plt.get_cmap("tab10")
    palette = [cmap(i) for i in (0, 1, 2, 4, 5, 6, 8, 9, 7)]  # tab10 without the red of V-CAST
    others = [m for m in methods if m not in VCAST_STYLES]
    ticks = sorted({r["ratio"] for r in rows if isinstance(r["ratio"], float)})
    for ax, (key, label) in zip(axes, metrics):
        for name in methods:
            pts = sorted((r["ratio_used"], r[key]) for r in rows
                         if r["method"] == name and is_measured(r) and not math.isnan(r[key]))
            if not pts:
                continue
            style = VCAST_STYLES.get(name, {"lw": 1.2, "alpha": 0.85, "color": palette[others.index(name) % len(palette)]
                                            if name in others else "grey"})
            marker = "*" if len(pts) == 1 else "o"
            ax.plot(*zip(*pts), marker=marker, ms=5 if marker == "o" else 13, label=name, **style)
        if key.endswith("share"):
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.set_xlabel("tokens kept (ratio)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[-1].axis("off")
    axes[-1].legend(handles, labels, loc="center", fontsize=9, ncols=2)
    fig.suptitle("vcast coverage benchmark (model-free, pixel token features)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@bench_app.command("coverage")
def coverage(
    ratios: str = typer.Option("0.5,0.25,0.15,0.1", "--ratios", help="Comma-separated retain ratios."),
    methods: str = typer.Option("", "--methods", help="Comma-separated methods/variants (default: all)."),
    seeds: int = typer.Option(None, "--seeds", min=1, help=f"Clips per kind (default 32, --quick {QUICK_SEEDS})."),
    quick: bool = typer.Option(False, "--quick", help=f"{QUICK_SEEDS} clips per kind instead of 32: about 40 s on "
                               "2 CPU cores (measured); the full run takes about 8 times as long."),
    first_seed: int = typer.Option(0, "--first-seed", min=0, help="Seed of the first clip (held-out runs)."),
    frames: int = typer.Option(16, "--frames", min=8, help="Frames per clip."),
    size: str = typer.Option("224x224", "--size", help="Frame size HxW in pixels."),
    grid: str = typer.Option("14x14", "--grid", help="Token grid hxw per frame."),
    json_path: str | None = typer.Option(None, "--json", metavar="PATH", help=JSON_HELP),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of each metric vs ratio."),
    reproduce: str | None = typer.Option(
        None, "--reproduce", help="authors or vllm: each method with that reproduce= mode (or those in "
        "--methods) twice, vcast's default and as the published code runs it (rows name[mode])."),
) -> None:
    """Coverage of needles, events, cuts and shake by every method on clips built from real photos."""
    from rich.markup import escape
    from rich.table import Table

    from vcast.bench.clips import CLIP_KINDS
    from vcast.bench.coverage import (
        build_suite,
        check_targets,
        default_variants,
        reproduce_variants,
        run_coverage,
    )
    from vcast.cli.output import console, to_stdout, write_json
    from vcast.cli.output import progress as progress_bar

    ratio_list = _floats(ratios, "--ratios")
    seeds = seeds if seeds is not None else (QUICK_SEEDS if quick else 32)
    names = [m.strip() for m in methods.split(",") if m.strip()] or None
    variants = default_variants(names) if reproduce is None else reproduce_variants(reproduce, names)
    hw, hw_grid = _pair(size, "--size"), _pair(grid, "--grid")
    with progress_bar() as progress:
        task = progress.add_task("building clips", total=None)
        suite = build_suite(seeds=seeds, frames=frames, size=hw, grid=hw_grid, first_seed=first_seed)
        runs = sum(1 if v.fixed_ratio else len(ratio_list) for v in variants)
        progress.update(task, total=runs, completed=0, description="selecting")

        def step(label: str) -> None:
            progress.update(task, advance=1, description=label)

        rows = run_coverage(variants, suite, ratio_list, progress=step)
    targets = check_targets(rows)

    table = Table(title=f"coverage: {seeds} clips x {len(CLIP_KINDS)} kinds, {frames} frames, grid {grid}",
                  caption=KEY, caption_justify="left")
    table.add_column("method", no_wrap=True)
    table.add_column("ratio", justify="right")
    for _, label in COLUMNS:
        table.add_column(label, justify="right")
    failed = False
    for row in rows:
        if "error" in row:
            failed = True
            table.add_row(escape(row["method"]), str(row["ratio"]), f"[red]error: {escape(row['error'])}[/red]")
            continue
        if "not_runnable" in row:
            table.add_row(escape(row["method"]), str(row["ratio"]), "[dim]published code cannot run here[/dim]")
            continue
        table.add_row(escape(row["method"]), str(row["ratio"]), *[_cell(row[k]) for k, _ in COLUMNS])
    out = console(stderr=to_stdout(json_path))
    out.print(table)
    if targets:
        t = Table(title="vcast-robust targets", caption="value +- standard error over clips; the targets are "
                  "the robust curvature's design goals (BENCHMARKS.md)", caption_justify="left")
        for col in ("ratio", "metric", "value", "target", "met"):
            t.add_column(col)
        for c in targets:
            t.add_row(str(c["ratio"]), c["metric"], f"{c['value']:.3f} +- {c['se']:.3f}", c["target"],
                      "[green]yes[/green]" if c["met"] else "[red]no[/red]")
        out.print(t)
    if json_path is not None:
        payload = {"seeds": seeds, "first_seed": first_seed, "frames": frames, "size": list(hw), "grid": list(hw_grid),
                   "ratios": ratio_list, "reproduce": reproduce, "rows": rows, "targets": targets}
        write_json(json_path, _json_safe(payload))
    if plot is not None:
        plot_rows(rows, plot)
    if failed:
        raise typer.Exit(1)
