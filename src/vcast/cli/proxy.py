"""``vcast proxy train`` and ``vcast bench accuracy``: the small trained Qwen3-VL accuracy proxy."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from vcast.cli.app import app, bench_app
from vcast.cli.output import JSON_HELP

proxy_app = typer.Typer(help="The accuracy proxy: a small Qwen3-VL trained on generated video questions.",
                        no_args_is_help=True)
app.add_typer(proxy_app, name="proxy")

QUICK_PER_FAMILY, FULL_PER_FAMILY = 20, 100


def _progress():
    from vcast.cli.output import progress

    return progress()


def _threads(threads: int | None) -> None:
    import torch

    if threads is not None:
        if threads < 1:
            from vcast.errors import ConfigError

            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


@proxy_app.command("train")
def train_cmd(
    seed: int = typer.Option(0, "--seed", help="Seeds the weights and picks the training clips."),
    steps: int = typer.Option(3600, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(16, "--batch-size", help="Clips per step."),
    out: Path = typer.Option(Path("proxy-model"), "--out", help="Directory for config.json + model.safetensors."),
    val_size: int = typer.Option(240, "--val-size", help="Validation clips scored after training (0: skip)."),
    threads: int = typer.Option(None, "--threads", help="torch threads (default: torch's choice)."),
) -> None:
    """Train the proxy from scratch (deterministic for a given seed, steps, batch size, torch build and threads).

    Writes the weights and ``train_log.json``: the exact command that rebuilds them, the weights' sha256,
    the torch version, losses (overall every 10 steps, per family every 100) and validation accuracy.
    """
    import torch

    from vcast.proxy import tasks
    from vcast.proxy.evaluate import accuracy, predict
    from vcast.proxy.model import build_processor, save_model
    from vcast.proxy.train import TrainConfig, train

    _threads(threads)
    cfg = TrainConfig(seed=seed, steps=steps, batch_size=batch_size)
    with _progress() as bar:
        task = bar.add_task("training", total=steps)

        def on_step(step: int, loss: float) -> None:
            bar.update(task, advance=1, description=f"training  loss {loss:.3f}")

        model, log = train(cfg, on_step=on_step)
    save_model(model, out)
    summary = {"seed": seed, "steps": steps, "batch_size": batch_size, "wall_s": log["wall_s"],
               "steps_per_s": log["steps_per_s"], "threads": log["threads"], "torch": torch.__version__,
               "sha256": sha256_file(out / "model.safetensors"),
               "final_loss": round(sum(log["losses"][-50:]) / len(log["losses"][-50:]), 4)}
    if val_size > 0:
        val = tasks.make_split("val", 0, val_size)
        summary["val"] = accuracy(val, predict(model, build_processor(), val))
    (out / "train_log.json").write_text(json.dumps(
        {"command": f"vcast proxy train --seed {seed} --steps {steps} --batch-size {batch_size} "
                    f"--threads {log['threads']} --val-size {val_size} --out {out}",
         **summary, "family_losses": log["family_losses"],
         "loss_every_10": [round(x, 4) for x in log["losses"][::10]]},
        indent=1) + "\n")
    typer.echo(json.dumps(summary, indent=2))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


ACCURACY_KEY = ("acc = share of the test questions answered right with the method at ratio r; retention = acc / "
                "the unpruned model's acc (1.0 = no loss). Chance differs per question family (vcast.proxy.tasks).")


def _table(report: dict, console=None) -> None:
    from rich.table import Table

    from vcast.cli.output import console as make_console
    from vcast.proxy.evaluate import setting_label
    from vcast.proxy.tasks import FAMILIES

    base = report["unpruned"]
    ratios = sorted({r["ratio"] for r in report["results"]}, reverse=True)
    console = console or make_console()
    title = (f"Proxy Qwen3-VL, {report['split']} split seed {report['seed']}, {base['n']} clips: unpruned "
             f"{base['overall']:.3f} (" + ", ".join(f"{f} {base['families'][f]:.2f}" for f in FAMILIES) + ")")
    table = Table("setting", *[f"r={r}: acc (retention)" for r in ratios], title=title, caption=ACCURACY_KEY,
                  caption_justify="left")
    rows: dict[str, dict] = {}
    for row in report["results"]:
        rows.setdefault(setting_label(row), {})[row["ratio"]] = row

    def cell(by_ratio: dict, r: float) -> str:
        if r not in by_ratio:
            return "-"
        if "not_runnable" in by_ratio[r]:
            return "cannot run (published code)"
        return f"{by_ratio[r]['overall']:.3f} ({_num(by_ratio[r]['retention'])})"

    for label, by_ratio in rows.items():
        table.add_row(label, *[cell(by_ratio, r) for r in ratios])
    console.print(table)
    low = min(ratios)
    fam = Table("setting", *FAMILIES, title=f"Per-family accuracy at r={low}")
    fam.add_row("unpruned", *[f"{base['families'][f]:.2f}" for f in FAMILIES])
    for label, by_ratio in rows.items():
        if low in by_ratio and "not_runnable" not in by_ratio[low]:
            fam.add_row(label, *[f"{by_ratio[low]['families'][f]:.2f}" for f in FAMILIES])
    console.print(fam)


def _plot(report: dict, path: Path) -> None:
    """Left: overall accuracy vs kept-token ratio per setting; right: per-family retention at the lowest ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from vcast.proxy.evaluate import setting_label
    from vcast.proxy.tasks import CHANCE, FAMILIES

    rows: dict[str, list[dict]] = {}
    for row in report["results"]:
        if "not_runnable" not in row:
            rows.setdefault(setting_label(row), []).append(row)
    fig, (ax, hm) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1.1, 1]})
    ax.set_prop_cycle(color=plt.cm.tab20.colors)
    for label, rs in rows.items():
        rs = sorted(rs, key=lambda r: r["kept_ratio"])
        bold = label.startswith("vcast")
        ax.plot([r["kept_ratio"] for r in rs], [r["overall"] for r in rs], marker="o" if bold else ".",
                lw=2.2 if bold else 1.0, ls="-" if bold else "--", label=label)
    base = report["unpruned"]["overall"]
    ax.axhline(base, color="k", lw=1, label=f"unpruned ({base:.3f})")
    ax.axhline(float(np.mean([CHANCE[f] for f in FAMILIES])), color="gray", ls=":", lw=1, label="chance")
    ax.set_xlabel("video tokens kept (fraction)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"proxy Qwen3-VL, {report['split']} seed {report['seed']}, {report['unpruned']['n']} clips")
    ax.legend(fontsize=7, loc="lower right")
    low = min(r["ratio"] for r in report["results"])
    labels = [lab for lab, rs in rows.items() if any(r["ratio"] == low for r in rs)]
    grid = np.array([[next(r for r in rows[lab] if r["ratio"] == low)["family_retention"].get(f) or 0.0
                      for f in FAMILIES] for lab in labels])
    im = hm.imshow(grid, vmin=0, vmax=1.1, cmap="viridis", aspect="auto")
    hm.set_xticks(range(len(FAMILIES)), FAMILIES, rotation=30)
    hm.set_yticks(range(len(labels)), labels, fontsize=7)
    for (i, j), v in np.ndenumerate(grid):
        hm.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.6 else "k")
    hm.set_title(f"accuracy retention per family at ratio {low}")
    fig.colorbar(im, ax=hm, fraction=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@bench_app.command("accuracy")
def accuracy_cmd(
    json_path: str = typer.Option(None, "--json", metavar="PATH", help=JSON_HELP),
    seed: int = typer.Option(0, "--seed", help="Test-split seed: any seed is a fresh set of questions."),
    quick: bool = typer.Option(False, "--quick", help=f"{QUICK_PER_FAMILY} clips per family: about 6 CPU-minutes "
                               "(measured 14-31 minutes on a shared 2-core machine)."),
    plot: Path = typer.Option(None, "--plot", help="Write a PNG: accuracy vs kept tokens per setting."),
    per_family: int = typer.Option(None, "--per-family",
                                   help=f"Clips per family (default {FULL_PER_FAMILY}, --quick {QUICK_PER_FAMILY})."),
    methods: str = typer.Option(None, "--methods", help="Comma-separated method names (default: all registered)."),
    ratios: str = typer.Option("0.5,0.25,0.15,0.1", "--ratios", help="Comma-separated retain ratios."),
    split: str = typer.Option("test", "--split", help="test (default) or val (for choosing settings)."),
    weights: Path = typer.Option(None, "--weights", help="Proxy weights dir (default: the committed ones)."),
    threads: int = typer.Option(None, "--threads", help="torch threads (default: torch's choice)."),
    reproduce: str = typer.Option(None, "--reproduce", help="authors or vllm: each method with that reproduce= "
                                  "mode (or those in --methods) at its defaults and as the published code runs it."),
) -> None:
    """Accuracy retention of every pruning method on the trained proxy Qwen3-VL (through vcast.apply)."""
    from vcast.errors import ConfigError
    from vcast.proxy import tasks
    from vcast.proxy.evaluate import run_benchmark, settings
    from vcast.proxy.model import build_processor, load_model

    _threads(threads)
    if split not in ("test", "val"):
        raise ConfigError(f"--split must be test or val, got {split!r}")
    try:
        ratio_list = [float(r) for r in ratios.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--ratios must be comma-separated numbers, got {ratios!r}") from None
    if not ratio_list or any(not 0.0 < r <= 1.0 for r in ratio_list):
        raise ConfigError(f"--ratios must be numbers in (0, 1], got {ratios!r}")
    n = per_family if per_family is not None else (QUICK_PER_FAMILY if quick else FULL_PER_FAMILY)
    if n < 1:
        raise ConfigError(f"--per-family must be >= 1, got {n}")
    method_list = [m.strip() for m in methods.split(",") if m.strip()] if methods else None
    todo = settings(method_list, reproduce)
    clips = tasks.make_split(split, seed, n * len(tasks.FAMILIES))
    model, processor = load_model(weights), build_processor()
    with _progress() as bar:
        task = bar.add_task("encoding + unpruned", total=len(todo) * len(ratio_list) + 1)

        def on_setting(label: str) -> None:
            bar.update(task, advance=1, description=label)

        report = run_benchmark(model, processor, clips, methods=method_list, ratios=ratio_list,
                               on_setting=on_setting, reproduce=reproduce)
        bar.update(task, advance=1, description="done")
    report = {"seed": seed, "split": split, "per_family": n, "weights": str(weights or "committed"),
              "reproduce": reproduce, **report}
    from vcast.cli.output import console, to_stdout, write_json

    _table(report, console(stderr=to_stdout(json_path)))
    write_json(json_path, report, indent=1)
    if plot is not None:
        _plot(report, plot)
        typer.echo(f"wrote {plot}", err=True)
