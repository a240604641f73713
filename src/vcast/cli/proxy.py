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
    vision_steps: int = typer.Option(None, "--vision-steps", help="Stage 1: vision-tower-only steps "
                                     "(default: the recipe's)."),
    steps: int = typer.Option(None, "--steps", help="Stage 2: full-model steps (default: the recipe's)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Clips per step."),
    out: Path = typer.Option(Path("proxy-model"), "--out", help="Directory for config.json + model.safetensors."),
    val_size: int = typer.Option(240, "--val-size", help="Validation clips scored after training (0: skip)."),
    threads: int = typer.Option(None, "--threads", help="torch threads (default: torch's choice)."),
) -> None:
    """Train the proxy from scratch (deterministic for a given seed, steps, batch size, torch build and threads).

    The rest of the recipe is :class:`vcast.proxy.train.TrainConfig`'s defaults. Writes the weights and
    ``train_log.json``: the exact command that rebuilds them, the weights' sha256, the torch version,
    losses (answer loss every 10 steps; per family, auxiliary losses and training accuracy every 100)
    and validation accuracy.
    """
    import torch
    import transformers

    from vcast.proxy import tasks
    from vcast.proxy.evaluate import accuracy, predict
    from vcast.proxy.model import build_processor, save_model
    from vcast.proxy.train import TrainConfig, train

    _threads(threads)
    defaults = TrainConfig()
    vision_steps = defaults.vision_steps if vision_steps is None else vision_steps
    steps = defaults.steps if steps is None else steps
    cfg = TrainConfig(seed=seed, vision_steps=vision_steps, steps=steps, batch_size=batch_size)
    with _progress() as bar:
        task = bar.add_task("training", total=cfg.total_steps)

        def on_step(step: int, loss: float) -> None:
            stage = "vision tower" if step < cfg.vision_steps else f"loss {loss:.3f}"
            bar.update(task, advance=1, description=f"training  {stage}")

        model, log = train(cfg, on_step=on_step)
    save_model(model, out)
    recent = log["losses"][-50:]
    summary = {"seed": seed, "vision_steps": vision_steps, "steps": steps, "batch_size": batch_size,
               "wall_s": log["wall_s"], "steps_per_s": log["steps_per_s"], "threads": log["threads"],
               "torch": torch.__version__, "transformers": transformers.__version__,
               "sha256": sha256_file(out / "model.safetensors"),
               "final_loss": round(sum(recent) / len(recent), 4) if recent else None}
    if val_size > 0:
        val = tasks.make_split("val", 0, val_size)
        summary["val"] = accuracy(val, predict(model, build_processor(), val))
    (out / "train_log.json").write_text(json.dumps(
        {"command": f"vcast proxy train --seed {seed} --vision-steps {vision_steps} --steps {steps} --batch-size "
                    f"{batch_size} --threads {log['threads']} --val-size {val_size} --out {out}",
         **summary, "config": log["config"], "family_accuracy": log["family_accuracy"],
         "family_losses": log["family_losses"], "aux_losses": log["aux_losses"],
         "loss_every_10": [round(x, 4) for x in log["losses"][::10]]},
        indent=1) + "\n")
    typer.echo(json.dumps(summary, indent=2))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@bench_app.command("accuracy")
def accuracy_cmd(
    json_path: str = typer.Option(None, "--json", metavar="PATH", help=JSON_HELP),
    seeds: str = typer.Option(None, "--seeds", help="Comma-separated test-split seeds, pooled (default 0,1,2): "
                              "each seed is a fresh set of questions."),
    seed: int = typer.Option(None, "--seed", help="One test-split seed (shortcut for --seeds N)."),
    combine: str = typer.Option(None, "--combine", metavar="A.json,B.json",
                                help="Pool earlier --json outputs (e.g. seeds run in parallel) instead of running; "
                                "the run options are taken from the files."),
    quick: bool = typer.Option(False, "--quick", help=f"{QUICK_PER_FAMILY} clips per family instead of "
                               f"{FULL_PER_FAMILY} (a full seed measured 7 minutes on one core of a 2-core machine)."),
    plot: Path = typer.Option(None, "--plot", help="Write a PNG: accuracy vs kept tokens per setting (95% CIs), "
                              "per-family retention at the lowest ratio."),
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
    """Accuracy retention of every pruning method on the trained proxy Qwen3-VL (through vcast.apply),
    pooled over test seeds with 95% intervals, paired comparisons and rankings."""
    from vcast.cli import proxy_report
    from vcast.errors import ConfigError
    from vcast.proxy.report import pool

    if combine is not None:
        if seeds is not None or seed is not None:
            raise ConfigError("--combine takes its seeds from the files; leave out --seed / --seeds")
        context, per_seed = proxy_report.load_combined(combine)
    else:
        seed_list = proxy_report.parse_seeds(seeds, seed)
        context, per_seed = _run_seeds(seed_list, quick=quick, per_family=per_family, methods=methods,
                                       ratios=ratios, split=split, weights=weights, threads=threads,
                                       reproduce=reproduce)
    per_seed = sorted(per_seed, key=lambda r: r["seed"])  # as pool orders them: files in any order, same JSON
    report = {**context, **pool(per_seed), "per_seed": per_seed}  # pool's keys start with "seeds"
    from vcast.cli.output import console, to_stdout, write_json

    proxy_report.print_report(report, console(stderr=to_stdout(json_path)))
    write_json(json_path, report, indent=1)
    if plot is not None:
        proxy_report.plot(report, plot)
        typer.echo(f"wrote {plot}", err=True)


def _run_seeds(seed_list: list[int], *, quick: bool, per_family: int | None, methods: str | None, ratios: str,
               split: str, weights: Path | None, threads: int | None, reproduce: str | None) -> tuple[dict, list]:
    """Run the benchmark on each test seed: ``(run context, per-seed reports)``."""
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
    model, processor = load_model(weights), build_processor()
    per_seed = []
    with _progress() as bar:
        task = bar.add_task("encoding + unpruned", total=len(seed_list) * (len(todo) * len(ratio_list) + 1))
        for s in seed_list:
            def on_setting(label: str, s: int = s) -> None:
                bar.update(task, advance=1, description=f"seed {s}: {label}")

            clips = tasks.make_split(split, s, n * len(tasks.FAMILIES))
            report = run_benchmark(model, processor, clips, methods=method_list, ratios=ratio_list,
                                   on_setting=on_setting, reproduce=reproduce)
            bar.update(task, advance=1, description=f"seed {s} done")
            per_seed.append({"seed": s, "split": split, "per_family": n, **report})
    context = {"split": split, "per_family": n, "weights": str(weights or "committed"), "reproduce": reproduce}
    return context, per_seed
