"""Pooling ``vcast bench accuracy`` over test seeds: intervals, paired comparisons, rankings, targets.

Every per-seed report (:func:`vcast.proxy.evaluate.run_benchmark` plus its ``seed``) holds, for the
unpruned model and each setting x ratio, the 0/1 correctness of every question. :func:`pool` puts
the seeds' questions side by side (the same questions for every setting, so comparisons are paired)
and stratifies every bootstrap by seed x question family.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vcast.errors import ConfigError
from vcast.proxy.evaluate import setting_label
from vcast.proxy.stats import paired_difference, retention_interval, verdict, wilson_interval

N_BOOT = 2000
TARGET_RATIO, TARGET_RETENTION = 0.25, 0.95  # "V-CAST keeps >= 95% at ratio 0.25, on every seed"
AHEAD_RATIOS = (0.15, 0.1)  # "the best V-CAST setting is ahead of every baseline at 0.15 and 0.1"


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 6)


def is_vcast(row: dict) -> bool:
    """True for a V-CAST-family setting (method name starting with ``vcast``)."""
    return row["method"].startswith("vcast")


def measured(row: dict) -> bool:
    """True for a row with accuracies (not ``not_runnable``)."""
    return "not_runnable" not in row


def _key(row: dict) -> tuple[str, float]:
    return setting_label(row), float(row["ratio"])


def _check(reports: Sequence[dict]) -> None:
    if not reports:
        raise ConfigError("no per-seed reports to pool")
    seeds = [r.get("seed") for r in reports]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"each test seed may be pooled once, got seeds {seeds}")
    keys = [[_key(row) for row in r["results"]] for r in reports]
    for seed, ks in zip(seeds[1:], keys[1:]):
        if sorted(ks) != sorted(keys[0]):
            extra, missing = sorted(set(ks) - set(keys[0])), sorted(set(keys[0]) - set(ks))
            raise ConfigError(f"seed {seed} was run with other settings x ratios than seed {seeds[0]} "
                              f"(only in seed {seed}: {extra}; missing: {missing})")
    for r in reports:
        n = len(r.get("question_family", ()))
        vectors = [r["unpruned"].get("correct")] + [row.get("correct") for row in r["results"] if measured(row)]
        if n == 0 or any(v is None or len(v) != n for v in vectors):
            raise ConfigError(f"seed {r['seed']}: the report needs question_family and a correct list per row "
                              "(one 0/1 per question), as vcast bench accuracy writes them under per_seed")


def pool(per_seed_reports: Sequence[dict], n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Pool per-seed reports (same settings x ratios, distinct seeds) into one, seeds in ascending order.

    ``n_boot`` and ``seed``: the bootstrap's replicates and seed (the same reports give the same result).

    Returns ``{"seeds", "n", "unpruned", "results", "comparisons", "authors_vs_default", "rankings",
    "targets"}``:

    * ``unpruned``: ``{"overall", "lo", "hi", "n", "families", "per_seed": [{"seed", "overall"}]}``
      (``lo``/``hi``: Wilson 95% interval of the pooled accuracy).
    * ``results``: per setting x ratio (first report's order) ``{"method", "options", "ratio", "label",
      "kept_ratio", "overall", "lo", "hi", "n", "retention", "retention_lo", "retention_hi", "families",
      "family_retention", "per_seed": [{"seed", "overall", "retention"}]}`` (retention interval: paired
      bootstrap), or ``{"method", "options", "ratio", "label", "not_runnable"}`` when any seed could
      not run it.
    * ``comparisons``: per ratio, the best V-CAST setting (highest pooled accuracy) against every
      non-V-CAST setting: ``{"ratio", "best", "baseline", "diff", "lo", "hi", "verdict"}``, diff = best
      minus baseline.
    * ``authors_vs_default``: per ratio ``{"ratio", "default", "authors", "diff", "lo", "hi",
      "verdict"}``, diff = ``vcast`` minus ``vcast(reproduce=authors)``.
    * ``rankings``: ``{str(ratio): "a > b ~ c"}``, settings by pooled accuracy; ``>`` where the adjacent
      pair's paired interval excludes 0.
    * ``targets``: ``retention_025_every_seed`` ``{"met", "per_seed"}`` and ``best_vcast_ahead_at``
      ``{str(ratio): bool}``, each only where its ratios and settings were run.
    """
    _check(per_seed_reports)
    reports = sorted(per_seed_reports, key=lambda r: r["seed"])  # the same pooled numbers in any order
    fams = np.array([f for r in reports for f in r["question_family"]])
    strata = [f"{r['seed']}:{f}" for r in reports for f in r["question_family"]]
    boot = {"strata": strata, "n_boot": n_boot, "seed": seed}
    base = np.concatenate([np.asarray(r["unpruned"]["correct"], dtype=float) for r in reports])
    by_key = [{_key(row): row for row in r["results"]} for r in reports]
    rows, correct = [], {}
    for row in reports[0]["results"]:
        per = [k[_key(row)] for k in by_key]
        pooled = _pooled_row(row, per, reports, base, fams, boot)
        rows.append(pooled)
        if measured(pooled):
            correct[_key(row)] = np.concatenate([np.asarray(p["correct"], dtype=float) for p in per])
    comparisons = _comparisons(rows, correct, boot)
    return {
        "seeds": [r["seed"] for r in reports], "n": len(base),
        "unpruned": _unpruned(reports, base, fams), "results": rows, "comparisons": comparisons,
        "authors_vs_default": _authors_vs_default(rows, correct, boot),
        "rankings": _rankings(rows, correct, boot), "targets": _targets(rows, comparisons),
    }


def _accuracy(correct: np.ndarray) -> dict:
    k, n = int(correct.sum()), len(correct)
    lo, hi = wilson_interval(k, n)
    return {"overall": _r(k / n), "lo": _r(lo), "hi": _r(hi), "n": n}


def _families(correct: np.ndarray, fams: np.ndarray) -> dict:
    return {f: float(correct[fams == f].mean()) for f in dict.fromkeys(fams.tolist())}


def _unpruned(reports: Sequence[dict], base: np.ndarray, fams: np.ndarray) -> dict:
    return {**_accuracy(base), "families": {f: _r(a) for f, a in _families(base, fams).items()},
            "per_seed": [{"seed": r["seed"], "overall": _r(np.mean(r["unpruned"]["correct"]))} for r in reports]}


def _pooled_row(row: dict, per: list[dict], reports: Sequence[dict], base: np.ndarray, fams: np.ndarray,
                boot: dict) -> dict:
    head = {"method": row["method"], "options": row["options"], "ratio": row["ratio"], "label": setting_label(row)}
    blocked = [p for p in per if not measured(p)]
    if blocked:
        return {**head, "not_runnable": blocked[0]["not_runnable"]}
    correct = np.concatenate([np.asarray(p["correct"], dtype=float) for p in per])
    ret = retention_interval(correct, base, **boot)
    base_fam = _families(base, fams)
    per_seed = []
    for p, r in zip(per, reports):
        acc, ref = float(np.mean(p["correct"])), float(np.mean(r["unpruned"]["correct"]))
        per_seed.append({"seed": r["seed"], "overall": _r(acc), "retention": _r(acc / ref) if ref > 0 else None})
    kept, before = sum(p.get("tokens_kept", 0) for p in per), sum(p.get("tokens_before", 0) for p in per)
    kept_ratio = kept / before if before else float(np.mean([p["kept_ratio"] for p in per]))
    fam = _families(correct, fams)
    return {**head, "kept_ratio": _r(kept_ratio), **_accuracy(correct), "retention": _r(ret["retention"]),
            "retention_lo": _r(ret["lo"]), "retention_hi": _r(ret["hi"]),
            "families": {f: _r(a) for f, a in fam.items()},
            "family_retention": {f: _r(a / base_fam[f]) if base_fam[f] > 0 else None for f, a in fam.items()},
            "per_seed": per_seed}


def _diff(a: np.ndarray, b: np.ndarray, boot: dict) -> dict:
    d = paired_difference(a, b, **boot)
    return {"diff": _r(d["diff"]), "lo": _r(d["lo"]), "hi": _r(d["hi"]), "verdict": verdict(d["lo"], d["hi"])}


def _at(rows: list[dict], ratio: float) -> list[dict]:
    return [r for r in rows if float(r["ratio"]) == ratio and measured(r)]


def _ratios(rows: list[dict]) -> list[float]:
    return sorted({float(r["ratio"]) for r in rows}, reverse=True)


def _comparisons(rows: list[dict], correct: dict, boot: dict) -> list[dict]:
    out = []
    for ratio in _ratios(rows):
        here = _at(rows, ratio)
        vc = [r for r in here if is_vcast(r)]
        if not vc:
            continue
        best = max(vc, key=lambda r: r["overall"])  # the first of equals
        for other in (r for r in here if not is_vcast(r)):
            out.append({"ratio": ratio, "best": best["label"], "baseline": other["label"],
                        **_diff(correct[_key(best)], correct[_key(other)], boot)})
    return out


def _authors_vs_default(rows: list[dict], correct: dict, boot: dict) -> list[dict]:
    out = []
    for ratio in _ratios(rows):
        here = {(r["method"], tuple(sorted(r["options"].items()))): r for r in _at(rows, ratio)}
        default, authors = here.get(("vcast", ())), here.get(("vcast", (("reproduce", "authors"),)))
        if default and authors:
            out.append({"ratio": ratio, "default": default["label"], "authors": authors["label"],
                        **_diff(correct[_key(default)], correct[_key(authors)], boot)})
    return out


def _rankings(rows: list[dict], correct: dict, boot: dict) -> dict[str, str]:
    out = {}
    for ratio in _ratios(rows):
        ranked = sorted(_at(rows, ratio), key=lambda r: -r["overall"])  # stable: ties keep the run's order
        if not ranked:
            continue
        text = ranked[0]["label"]
        for hi, lo in zip(ranked, ranked[1:]):
            sign = ">" if _diff(correct[_key(hi)], correct[_key(lo)], boot)["verdict"] == ">" else "~"
            text += f" {sign} {lo['label']}"
        out[str(ratio)] = text
    return out


def _targets(rows: list[dict], comparisons: list[dict]) -> dict:
    targets: dict = {}
    plain = [r for r in _at(rows, TARGET_RATIO) if r["method"] == "vcast" and not r["options"]]
    if plain:
        per = plain[0]["per_seed"]
        targets["retention_025_every_seed"] = {
            "met": all(p["retention"] is not None and p["retention"] >= TARGET_RETENTION for p in per),
            "per_seed": [{"seed": p["seed"], "retention": p["retention"]} for p in per]}
    ahead = {}
    for ratio in AHEAD_RATIOS:
        here = [c for c in comparisons if c["ratio"] == ratio]
        if here:
            ahead[str(ratio)] = all(c["verdict"] == ">" for c in here)
    if ahead:
        targets["best_vcast_ahead_at"] = ahead
    return targets
