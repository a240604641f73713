"""How far each ``reproduce=`` mode is from vcast's default on identical features (issue 13).

For every method with a mode, on a grid of videos (random, static background with noise, one hard
cut; T in {2, 4, 8, 16, 32}, N in {4, 16, 64, 196}, D = 32, ratios 0.5 / 0.25 / 0.15 / 0.1, two
seeds: 480 cases), counts the cases where the kept count, the per-frame budgets or the kept set of
the mode differ from the default, the mean Jaccard index of the kept sets, and, for the cases where
the mode keeps the default's K, how often the per-frame budgets agree. Deterministic; one thread.

Usage::

    python benchmarks/reproduce_agreement.py [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch

import vcast

KINDS = ("random", "static", "cut")
FRAMES = (2, 4, 8, 16, 32)
TOKENS = (4, 16, 64, 196)
RATIOS = (0.5, 0.25, 0.15, 0.1)


def video(kind: str, t: int, n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randn(t, n, d, generator=g)
    x = torch.randn(1, n, d, generator=g).repeat(t, 1, 1) + 0.05 * torch.randn(t, n, d, generator=g)
    if kind == "cut":
        x[t // 2:] += 2.0 * torch.randn(1, n, d, generator=g)
    return x


def compare(method: str, mode: str) -> dict:
    counts = {"cases": 0, "not_runnable": 0, "count_differs": 0, "budgets_differ": 0, "kept_set_differs": 0,
              "same_count": 0, "same_count_same_budgets": 0}
    jaccard = []
    for kind, t, n, r, seed in itertools.product(KINDS, FRAMES, TOKENS, RATIOS, (0, 1)):
        x = video(kind, t, n, 32, seed)
        counts["cases"] += 1
        try:
            a = vcast.select_tokens(x, method=method, retain_ratio=r, reproduce=mode)
        except vcast.ReproduceError:
            counts["not_runnable"] += 1
            continue
        b = vcast.select_tokens(x, method=method, retain_ratio=r)
        same_budget = a.frame_budget.tolist() == b.frame_budget.tolist()
        counts["count_differs"] += a.num_kept != b.num_kept
        counts["budgets_differ"] += not same_budget
        sa, sb = set(a.keep_index.tolist()), set(b.keep_index.tolist())
        counts["kept_set_differs"] += sa != sb
        jaccard.append(len(sa & sb) / len(sa | sb))
        if a.num_kept == b.num_kept:
            counts["same_count"] += 1
            counts["same_count_same_budgets"] += same_budget
    return {**counts, "mean_jaccard": round(sum(jaccard) / max(len(jaccard), 1), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write the table here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = {}
    for name in vcast.list_methods():
        for mode in vcast.get_method(name).reproduce_modes:
            rows[f"{name}[{mode}]"] = compare(name, mode)
            print(name, mode, rows[f"{name}[{mode}]"], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"kinds": KINDS, "frames": FRAMES, "tokens": TOKENS, "ratios": RATIOS, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
