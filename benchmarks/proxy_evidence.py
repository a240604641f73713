"""Is the proxy's evidence where the generator drew it? Accuracy when every temporal patch keeps k tokens.

For each question family whose evidence is drawn (every family but ``cuts``), each temporal patch keeps
``k`` of its 16 tokens: ``only`` the tokens showing a drawn object or flash (topped up at random where
there are fewer), ``never`` those tokens, or ``random`` ones. A model whose vision tower spread an
object's identity over its whole frame would answer from any token (``never`` near ``only``); a model
whose evidence stays local falls to chance on ``never``. The selections go through vcast's own adapter
(pruned sequence, original positions), as every pruning method does.

    python benchmarks/proxy_evidence.py [--weights DIR] [--seed 2031] [--per-family 40] [--json PATH]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from vcast.proxy import tasks
from vcast.proxy.batching import WHAT, pruned_to, thin_selections, token_targets
from vcast.proxy.evaluate import batch_indices
from vcast.proxy.model import TOKEN_ID, build_processor, encode, load_model

FAMILIES = tuple(f for f in tasks.FAMILIES if f != "cuts")
MODES = ("only", "never", "random")
_OBJECTS = {"only": 1, "never": -1, "random": 0}  # :func:`thin_selections` ``objects`` per mode
_TOKEN = {i: t for t, i in TOKEN_ID.items()}


@torch.no_grad()
def accuracy(model, processor, clips, mode: str, k: int, seed: int) -> dict[str, float]:
    """Per family, the share of ``clips`` answered right when every temporal patch keeps ``k`` tokens
    chosen by ``mode``."""
    rng = np.random.default_rng([seed, k, MODES.index(mode)])
    right = {f: [] for f in FAMILIES}
    for index in batch_indices(clips, 24):  # one clip length per batch
        group = [clips[i] for i in index]
        t = len(group[0].frames) // 2
        what = token_targets(group)[:, WHAT].reshape(len(group), t, -1).numpy()  # [b, T, N]
        chosen = thin_selections(rng, what, np.full(len(group), k / what.shape[-1]), objects=_OBJECTS[mode])
        with pruned_to(model, chosen):
            logits = model(**encode(processor, group), logits_to_keep=1).logits[:, -1]
        for clip, token in zip(group, logits.argmax(-1).tolist()):
            right[clip.family].append(_TOKEN.get(int(token)) == clip.answer)
    return {f: round(float(np.mean(v)), 4) for f, v in right.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None, help="proxy weights dir (default: the committed ones)")
    parser.add_argument("--seed", type=int, default=2031, help="test-split seed")
    parser.add_argument("--per-family", type=int, default=40)
    parser.add_argument("--keep", default="1,2,4", help="tokens kept per temporal patch (of 16)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    model, processor = load_model(args.weights), build_processor()
    clips = tasks.make_split("test", args.seed, args.per_family * len(FAMILIES), families=FAMILIES)
    rows = []
    print(f"{'k':>2} {'mode':>6} " + " ".join(f"{f:>6}" for f in FAMILIES) + "   mean")
    for k in (int(x) for x in args.keep.split(",")):
        for mode in MODES:
            acc = accuracy(model, processor, clips, mode, k, args.seed)
            rows.append({"keep_per_patch": k, "mode": mode, "families": acc,
                         "mean": round(float(np.mean(list(acc.values()))), 4)})
            print(f"{k:>2} {mode:>6} " + " ".join(f"{acc[f]:>6.2f}" for f in FAMILIES) + f"   {rows[-1]['mean']:.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seed": args.seed, "per_family": args.per_family, "chance": {f: tasks.CHANCE[f] for f in FAMILIES},
                       "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
