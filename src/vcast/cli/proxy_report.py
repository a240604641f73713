"""What ``vcast bench accuracy`` shows and reads: pooled tables, the plot, ``--seeds`` and ``--combine``."""

from __future__ import annotations

import json
from pathlib import Path

from vcast.errors import ConfigError

ACCURACY_KEY = ("acc [95% CI] = share of all test questions (every seed) answered right with the method at ratio r "
                "(Wilson interval); retention = acc / the unpruned model's acc (1.0 = no loss), CI by a paired "
                "bootstrap over questions within seed x family. Chance differs per question family "
                "(vcast.proxy.tasks).")
COMPARE_KEY = ("A - B = accuracy difference on the same questions: the best V-CAST setting at that ratio minus each "
               "baseline, then vcast minus vcast as the published code runs it; > / <: the paired 95% CI "
               "(bootstrap within seed x family) excludes 0; ~: it does not.")
# The run's context every combined file must share.
SHARED = ("split", "per_family", "weights", "reproduce")


def parse_seeds(seeds: str | None, seed: int | None, default: str = "0,1,2") -> list[int]:
    """``--seeds`` (comma list) or ``--seed`` (one), never both; distinct non-negative ints."""
    if seeds is not None and seed is not None:
        raise ConfigError("give --seed N or --seeds A,B,..., not both")
    if seed is not None:
        seeds = str(seed)
    text = default if seeds is None else seeds
    try:
        out = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not out or any(s < 0 for s in out) or len(set(out)) != len(out):
        raise ConfigError(f"--seeds must be distinct integers >= 0, got {text!r}")
    return out


def load_combined(paths: str) -> tuple[dict, list[dict]]:
    """``--combine A.json,B.json``: ``(shared context, per-seed reports)`` from earlier ``--json`` outputs."""
    files = [p.strip() for p in paths.split(",") if p.strip()]
    if not files:
        raise ConfigError("--combine needs comma-separated JSON files written by vcast bench accuracy --json")
    context, per_seed = None, []
    for name in files:
        try:
            data = json.loads(Path(name).read_text())
        except FileNotFoundError:
            raise ConfigError(f"--combine: no such file {name}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"--combine: {name} is not readable JSON ({err})") from None
        if not isinstance(data, dict) or not isinstance(data.get("per_seed"), list) or not data["per_seed"]:
            raise ConfigError(f"--combine: {name} has no per_seed list (write it with vcast bench accuracy --json "
                              "on this version)")
        if not all(isinstance(r, dict) and isinstance(r.get("seed"), int) and {"unpruned", "results"} <= set(r)
                   for r in data["per_seed"]):
            raise ConfigError(f"--combine: {name}'s per_seed entries need seed, unpruned and results")
        here = {k: data.get(k) for k in SHARED}
        if context is None:
            context = here
        elif here != context:
            diff = {k: (context[k], here[k]) for k in SHARED if here[k] != context[k]}
            raise ConfigError(f"--combine: {name} was run differently from {files[0]}: {diff}")
        per_seed += data["per_seed"]
    return context, per_seed


def _ci(lo: float | None, hi: float | None) -> str:
    return "[n/a]" if lo is None or hi is None else f"[{lo:.3f}, {hi:.3f}]"


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _by_label(report: dict) -> dict[str, dict[float, dict]]:
    rows: dict[str, dict[float, dict]] = {}
    for row in report["results"]:
        rows.setdefault(row["label"], {})[row["ratio"]] = row
    return rows


def print_report(report: dict, console) -> None:
    """The pooled tables, rankings and targets of ``report`` (a pooled JSON of ``vcast bench accuracy``)."""
    from rich.table import Table

    from vcast.proxy.tasks import FAMILIES

    base, rows = report["unpruned"], _by_label(report)
    ratios = sorted({r["ratio"] for r in report["results"]}, reverse=True)
    seeds = ",".join(str(s) for s in report["seeds"])
    title = (f"Proxy Qwen3-VL, {report['split']} split seeds {seeds}, {base['n']} questions: unpruned "
             f"{base['overall']:.3f} {_ci(base['lo'], base['hi'])} (per seed "
             + ", ".join(f"{p['seed']}: {p['overall']:.3f}" for p in base["per_seed"]) + ")")
    table = Table("setting", *[f"r={r}: acc [CI] (retention [CI])" for r in ratios], title=title,
                  caption=ACCURACY_KEY, caption_justify="left")

    def cell(by_ratio: dict, r: float) -> str:
        if r not in by_ratio:
            return "-"
        row = by_ratio[r]
        if "not_runnable" in row:
            return "cannot run (published code)"
        return (f"{row['overall']:.3f} {_ci(row['lo'], row['hi'])} "
                f"({_num(row['retention'])} {_ci(row['retention_lo'], row['retention_hi'])})")

    for label, by_ratio in rows.items():
        table.add_row(label, *[cell(by_ratio, r) for r in ratios])
    console.print(table)
    low = min(ratios)
    fam = Table("setting", *FAMILIES, title=f"Per-family accuracy at r={low} (all seeds)")
    fam.add_row("unpruned", *[_num(base["families"].get(f)) for f in FAMILIES])
    for label, by_ratio in rows.items():
        if low in by_ratio and "not_runnable" not in by_ratio[low]:
            fam.add_row(label, *[_num(by_ratio[low]["families"].get(f)) for f in FAMILIES])
    console.print(fam)
    _print_comparisons(report, console)


def _print_comparisons(report: dict, console) -> None:
    from rich.table import Table

    if report["comparisons"] or report["authors_vs_default"]:
        table = Table("ratio", "A", "B", "A - B", "95% CI", "", title="Paired differences (same questions)",
                      caption=COMPARE_KEY, caption_justify="left")
        for c in report["comparisons"]:
            table.add_row(str(c["ratio"]), c["best"], c["baseline"], f"{c['diff']:+.3f}", _ci(c["lo"], c["hi"]),
                          c["verdict"])
        for c in report["authors_vs_default"]:
            table.add_row(str(c["ratio"]), c["default"], c["authors"], f"{c['diff']:+.3f}", _ci(c["lo"], c["hi"]),
                          c["verdict"])
        console.print(table)
    for ratio, text in report["rankings"].items():
        console.print(f"ranking r={ratio}: {text}")
    targets = report["targets"]
    if "retention_025_every_seed" in targets:
        t = targets["retention_025_every_seed"]
        per = ", ".join(f"seed {p['seed']}: {_num(p['retention'])}" for p in t["per_seed"])
        console.print(f"target vcast retention >= 0.95 at 0.25 on every seed: {'met' if t['met'] else 'not met'} "
                      f"({per})")
    for ratio, ok in targets.get("best_vcast_ahead_at", {}).items():
        console.print(f"target best vcast setting ahead of every baseline at {ratio} (CI excludes 0): "
                      f"{'met' if ok else 'not met'}")


DODGE = 0.002  # x offset between settings' points in the plot (fraction of tokens)


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def plot(report: dict, path: Path) -> None:
    """Left: pooled accuracy vs kept-token ratio per setting with 95% error bars; right: per-family
    retention at the lowest ratio (all seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from vcast.proxy.tasks import CHANCE, FAMILIES

    rows: dict[str, list[dict]] = {}
    for row in report["results"]:
        if "not_runnable" not in row:
            rows.setdefault(row["label"], []).append(row)
    fig, (ax, hm) = plt.subplots(1, 2, figsize=(14, 5.5), gridspec_kw={"width_ratios": [1.1, 1]})
    ax.set_prop_cycle(color=plt.cm.tab20.colors)
    for i, (label, rs) in enumerate(rows.items()):
        rs = sorted(rs, key=lambda r: r["kept_ratio"])
        bold = label.startswith("vcast")
        acc = np.array([r["overall"] for r in rs])
        err = np.array([[a - r["lo"] for a, r in zip(acc, rs)], [r["hi"] - a for a, r in zip(acc, rs)]])
        dodge = DODGE * (i - (len(rows) - 1) / 2)  # side by side, so the error bars stay apart
        ax.errorbar([r["kept_ratio"] + dodge for r in rs], acc, yerr=err, marker="o" if bold else ".",
                    capsize=2, elinewidth=0.8, lw=2.2 if bold else 1.0, ls="-" if bold else "--", label=label)
    base = report["unpruned"]
    ax.axhline(base["overall"], color="k", lw=1, label=f"unpruned ({base['overall']:.3f})")
    ax.axhspan(base["lo"], base["hi"], color="k", alpha=0.08)
    ax.axhline(float(np.mean([CHANCE[f] for f in FAMILIES])), color="gray", ls=":", lw=1, label="chance")
    ax.set_xlabel("video tokens kept (fraction)")
    ax.set_ylabel("accuracy (95% CI)")
    seeds = ",".join(str(s) for s in report["seeds"])
    ax.set_title(f"proxy Qwen3-VL, {report['split']} seeds {seeds}, {base['n']} questions")
    ax.legend(fontsize=7, loc="lower right")
    low = min(r["ratio"] for r in report["results"])
    labels = [lab for lab, rs in rows.items() if any(r["ratio"] == low for r in rs)]
    # n/a (blank): the unpruned model got none of that family right
    grid = np.array([[_nan(next(r for r in rows[lab] if r["ratio"] == low)["family_retention"].get(f))
                      for f in FAMILIES] for lab in labels]).reshape(len(labels), len(FAMILIES))
    im = hm.imshow(grid, vmin=0, vmax=1.1, cmap="viridis", aspect="auto")
    hm.set_xticks(range(len(FAMILIES)), FAMILIES, rotation=30)
    hm.set_yticks(range(len(labels)), labels, fontsize=7)
    for (i, j), v in np.ndenumerate(grid):
        hm.text(j, i, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=6,
                color="k" if np.isnan(v) or v >= 0.6 else "w")
    hm.set_title(f"accuracy retention per family at ratio {low} (all seeds)")
    fig.colorbar(im, ax=hm, fraction=0.04)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
