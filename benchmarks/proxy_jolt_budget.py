"""Where does each method spend its budget when camera jolts compete with a brief real event?

The proxy's ``jolt`` family (``vcast.proxy.tasks``): the camera jumps 20-36 px for one or two frames,
once or twice, and a shape appears in one frame of a temporal patch no jolt touches; the question
asks which shape. The frame-mean trajectory turns sharply at the jolts, so a budget that follows
trajectory curvature alone would spend its tokens there rather than on the event. For every setting
and ratio this measures, over the jolt clips of one test seed, through vcast's own adapter on the
trained proxy:

- ``jolt_share``: the share of kept tokens on jolted temporal patches divided by the share of patches
  that are jolted (1.0 = a uniform budget; 2.0 = twice their fair share).
- ``event_share``: the event patch's budget divided by the mean patch budget (1.0 = uniform).
- ``top_curvature_jolted``: how often the patch with the highest curvature score is a jolted one
  (methods that report a curvature).
- ``event_kept``: how often at least one token showing the shape survives.
- ``accuracy`` of the answers (unpruned: the first row).

    python benchmarks/proxy_jolt_budget.py [--weights DIR] [--seed 2031] [--clips 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import vcast
from vcast.proxy import tasks
from vcast.proxy.batching import WHAT, token_targets
from vcast.proxy.model import TOKEN_ID, build_processor, encode, load_model

SETTINGS = (("vcast", {}), ("vcast", {"reproduce": "authors"}), ("vcast-robust", {}), ("uniform", {}),
            ("vidcom2", {}), ("visionzip", {}))
_TOKEN = {i: t for t, i in TOKEN_ID.items()}


def _label(method: str, options: dict) -> str:
    return method + "".join(f"({k}={v})" for k, v in options.items())


def prepare(processor, clips, batch: int = 25) -> list[tuple]:
    """Per batch of ``clips``, computed once for every setting: ``(clips, processor inputs, bool[b, T]
    jolted temporal patches, long[b] the event's patch, bool[b, T, N] tokens showing the shape)``."""
    out = []
    for start in range(0, len(clips), batch):
        group = clips[start:start + batch]
        t = len(group[0].frames) // 2
        jolted = np.zeros((len(group), t), dtype=bool)
        for row, clip in zip(jolted, group):
            row[[f // 2 for f in clip.distractors]] = True
        event_patch = np.array([clip.evidence[0] // 2 for clip in group])
        event = token_targets(group)[:, WHAT].reshape(len(group), t, -1).numpy() > 0
        out.append((group, encode(processor, group), jolted, event_patch, event))
    return out


@torch.no_grad()
def measure(model, batches: list[tuple], method: str | None, options: dict, ratio: float) -> dict:
    """The metrics above for one setting over :func:`prepare`'s batches (``method=None``: unpruned,
    accuracy only)."""
    right, jolt_share, event_share, top_jolted, event_kept = [], [], [], [], []
    for group, inputs, jolted, event_patch, event in batches:
        if method is None:
            logits = model(**inputs, logits_to_keep=1).logits[:, -1]
            selections = []
        else:
            with vcast.enabled(model, method=method, retain_ratio=ratio, **options) as handle:
                logits = model(**inputs, logits_to_keep=1).logits[:, -1]
            selections = handle.selections
        right += [_TOKEN.get(int(tok)) == c.answer for c, tok in zip(group, logits.argmax(-1).tolist())]
        for i, sel in enumerate(selections):
            budget = sel.frame_budget.double().numpy()
            jolt_share.append((budget[jolted[i]].sum() / budget.sum()) / jolted[i].mean())
            event_share.append(budget[event_patch[i]] / budget.mean())
            curvature = sel.curvature.double().numpy()
            if np.ptp(curvature) > 0:
                top_jolted.append(bool(jolted[i, int(curvature.argmax())]))
            event_kept.append(bool((sel.keep_mask().numpy() & event[i]).any()))

    def mean(values: list) -> float | None:
        return round(float(np.mean(values)), 4) if values else None

    return {"accuracy": mean(right), "jolt_share": mean(jolt_share), "event_share": mean(event_share),
            "top_curvature_jolted": mean(top_jolted), "event_kept": mean(event_kept)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="proxy weights dir (default: the committed ones)")
    parser.add_argument("--seed", type=int, default=2031, help="test-split seed")
    parser.add_argument("--clips", type=int, default=200, help="jolt clips")
    parser.add_argument("--ratios", default="0.25,0.1")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    model, processor = load_model(args.weights), build_processor()
    batches = prepare(processor, tasks.make_split("test", args.seed, args.clips, families=("jolt",)))
    rows = [{"setting": "unpruned", "ratio": 1.0, **measure(model, batches, None, {}, 1.0)}]
    for ratio in (float(r) for r in args.ratios.split(",")):
        for method, options in SETTINGS:
            rows.append({"setting": _label(method, options), "ratio": ratio,
                         **measure(model, batches, method, options, ratio)})
    keys = ("accuracy", "jolt_share", "event_share", "top_curvature_jolted", "event_kept")
    print(f"{'setting':<26} {'ratio':>5} " + " ".join(f"{k:>20}" for k in keys))
    for row in rows:
        print(f"{row['setting']:<26} {row['ratio']:>5} "
              + " ".join(f"{'-' if row[k] is None else format(row[k], '.3f'):>20}" for k in keys))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seed": args.seed, "clips": args.clips, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
