"""Selection overhead of every registered pruning method, relative to LLM prefill, in one run.

Contenders, on the same ``[T, N, D]`` features (default T=64, N=196, D=3584, float32, CPU):
  - every registered method's ``select`` at ``--ratio`` (all keep the same K tokens);
  - ``one_pass``: ``features.sum()``, one read of the features (bandwidth reference);
  - ``decoder_layer``: one Qwen2 decoder layer of width D (for D=3584: MLP 18944, 28 query / 4 KV
    heads, i.e. the LLM of Qwen2.5-VL-7B) with random weights and SDPA, doing prefill on the K
    kept tokens. The full-prefill estimate is ``--layers`` (28) times that layer: it leaves out
    the embedding, final norm and LM head (a few percent at this length) and the vision encoder,
    so it understates the real prefill and the fractions below are upper bounds.

The features are video-like rather than white noise (a per-token random walk with a scene cut
every 8 frames, seeded), so segmenting methods (FastVID) and temporal ones (EVS, DyCoke) take
their usual paths. Methods are timed round-robin (``--repeats``, medians); the layer is timed in
the same process afterwards (``--layer-repeats``). Results are ratios measured in one run.

Usage::

    python benchmarks/bench_methods.py [--frames 64] [--tokens 196] [--dim 3584] [--ratio 0.25]
        [--repeats 5] [--layer-repeats 2] [--layers 28] [--threads N] [--methods a,b] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import time_interleaved  # noqa: E402

from vcast.core.budget import total_budget  # noqa: E402
from vcast.methods import get_method, list_methods, make_config  # noqa: E402

# Qwen2.5-7B / Qwen2.5-VL-7B language model: hidden 3584, MLP 18944, 28 heads, 4 KV heads, 28 layers.
QWEN25_7B = {"hidden": 3584, "intermediate": 18944, "heads": 28, "kv_heads": 4, "layers": 28}


def video_features(frames: int, tokens: int, dim: int, seed: int = 0, cut_every: int = 8) -> torch.Tensor:
    """``FloatTensor[T, N, D]``: per-token random walks, re-drawn at a scene cut every ``cut_every``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(frames, tokens, dim)
    cur = torch.randn(tokens, dim, generator=g)
    for t in range(frames):  # data generation only
        if t and t % cut_every == 0:
            cur = torch.randn(tokens, dim, generator=g)
        cur = cur + 0.25 * torch.randn(tokens, dim, generator=g)
        x[t] = cur
    return x


def decoder_layer(dim: int, tokens: int):
    """A no-grad prefill call of one Qwen2 decoder layer of width ``dim`` on ``tokens`` tokens."""
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RotaryEmbedding

    if dim == QWEN25_7B["hidden"]:
        inter, heads, kv = QWEN25_7B["intermediate"], QWEN25_7B["heads"], QWEN25_7B["kv_heads"]
    else:  # same proportions
        heads = max(dim // 128, 1)
        inter, kv = int(round(dim * 18944 / 3584)), max(heads // 7, 1)
    cfg = Qwen2Config(hidden_size=dim, intermediate_size=inter, num_attention_heads=heads,
                      num_key_value_heads=kv, attn_implementation="sdpa")
    torch.manual_seed(0)
    layer = Qwen2DecoderLayer(cfg, layer_idx=0).eval()
    rope = Qwen2RotaryEmbedding(cfg)
    h = torch.randn(1, tokens, dim)
    pos = torch.arange(tokens)[None]
    emb = rope(h, pos)

    @torch.no_grad()
    def run():
        return layer(h, attention_mask=None, position_ids=pos, position_embeddings=emb)

    return run, {"hidden": dim, "intermediate": inter, "heads": heads, "kv_heads": kv}


def median_time(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=196)
    parser.add_argument("--dim", type=int, default=3584)
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layer-repeats", type=int, default=2)
    parser.add_argument("--layers", type=int, default=QWEN25_7B["layers"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--methods", default=None, help="comma-separated subset (default: all registered)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods.split(",") if args.methods else list_methods()
    x = video_features(args.frames, args.tokens, args.dim)
    k = total_budget(args.frames, args.tokens, args.ratio)
    fns = {"one_pass": lambda: x.sum()}
    for name in methods:
        spec, cfg = get_method(name), make_config(name, retain_ratio=args.ratio)
        assert spec.select(x, cfg).num_kept == k
        fns[name] = (lambda s=spec, c=cfg: s.select(x, c))
    med = time_interleaved(fns, args.repeats, "cpu")
    layer_fn, layer_cfg = decoder_layer(args.dim, k)
    layer_s = median_time(layer_fn, args.layer_repeats)
    prefill_s = args.layers * layer_s

    rows = []
    for name in methods:
        rows.append({
            "method": name,
            "merges": get_method(name).merges,
            "select_ms": round(med[name] * 1e3, 2),
            "x_one_pass": round(med[name] / med["one_pass"], 2),
            "pct_of_one_layer": round(100 * med[name] / layer_s, 3),
            "pct_of_prefill_estimate": round(100 * med[name] / prefill_s, 4),
        })
    result = {
        "device": "cpu", "dtype": "float32", "threads": torch.get_num_threads(), "machine": platform.machine(),
        "torch": torch.__version__, "shape": [args.frames, args.tokens, args.dim], "retain_ratio": args.ratio,
        "kept_tokens": k, "one_pass_ms": round(med["one_pass"] * 1e3, 2),
        "decoder_layer": {**layer_cfg, "prefill_tokens": k, "ms": round(layer_s * 1e3, 1)},
        "prefill_estimate": {"layers": args.layers, "ms": round(prefill_s * 1e3, 1)},
        "repeats": args.repeats, "layer_repeats": args.layer_repeats, "methods": rows,
    }
    print(f"T={args.frames} N={args.tokens} D={args.dim} fp32 CPU ({result['threads']} threads), "
          f"ratio {args.ratio} -> K={k}; one layer prefill on K tokens: {layer_s * 1e3:.0f} ms, "
          f"{args.layers}-layer estimate {prefill_s:.1f} s")
    print(f"{'method':14s} {'select ms':>10s} {'x one pass':>11s} {'% 1 layer':>10s} {'% prefill':>10s}")
    for r in rows:
        print(f"{r['method']:14s} {r['select_ms']:10.1f} {r['x_one_pass']:11.1f} "
              f"{r['pct_of_one_layer']:10.2f} {r['pct_of_prefill_estimate']:10.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
