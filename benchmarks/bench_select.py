"""Speed of the V-CAST selection core, as ratios measured in one run.

Contenders, on the same ``[T, N, D]`` features:
  - ``one_pass``: ``features.sum()``, one read of the features: the bandwidth floor;
  - ``vectorised``: ``vcast.select_tokens`` (three reads of the features, see vcast.core.select);
  - ``loop``: ``vcast.core.reference.loop_select_tokens``, a per-frame Python loop with ``.item()``
    calls, the shape of the published code;
  - ``decoder_layer``: one Qwen2 decoder layer (width D, MLP 18944 for D=3584, GQA 28/4 heads) doing
    prefill on the K kept tokens, to put the selection's cost in proportion.

Usage::

    python benchmarks/bench_select.py [--device cpu|cuda] [--dtype float32|bfloat16|float16]
        [--frames 64] [--tokens 196] [--dim 3584] [--ratio 0.25] [--repeats 7] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import time_interleaved  # noqa: E402

import vcast  # noqa: E402
from vcast.core.reference import loop_select_tokens  # noqa: E402


def decoder_layer(dim: int, tokens: int, device: str, dtype: torch.dtype):
    """A prefill call of one Qwen2 decoder layer of width ``dim`` on ``tokens`` tokens."""
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RotaryEmbedding

    heads = max(dim // 128, 1)
    cfg = Qwen2Config(hidden_size=dim, intermediate_size=int(dim * 5.2857), num_attention_heads=heads,
                      num_key_value_heads=max(heads // 7, 1), attn_implementation="sdpa")
    layer = Qwen2DecoderLayer(cfg, layer_idx=0).to(device=device, dtype=dtype).eval()
    rope = Qwen2RotaryEmbedding(cfg).to(device)
    h = torch.randn(1, tokens, dim, device=device, dtype=dtype)
    pos = torch.arange(tokens, device=device)[None]
    emb = rope(h, pos)

    @torch.no_grad()
    def run():
        return layer(h, attention_mask=None, position_ids=pos, position_embeddings=emb)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=196)
    parser.add_argument("--dim", type=int, default=3584)
    parser.add_argument("--ratio", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-layer", action="store_true", help="skip the decoder-layer comparison")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    x = torch.randn(args.frames, args.tokens, args.dim, device=args.device).to(dtype)
    cfg = vcast.VCastConfig(retain_ratio=args.ratio)

    vec = vcast.select_tokens(x, cfg)
    loop = loop_select_tokens(x, cfg)
    same = torch.equal(vec.keep_index.cpu(), loop.keep_index) and torch.equal(vec.frame_budget.cpu(), loop.frame_budget)

    fns = {
        "one_pass": lambda: x.sum(),
        "vectorised": lambda: vcast.select_tokens(x, cfg),
        "loop": lambda: loop_select_tokens(x, cfg),
    }
    if not args.no_layer:
        fns["decoder_layer"] = decoder_layer(args.dim, vec.num_kept, args.device, dtype)
    med = time_interleaved(fns, args.repeats, args.device)

    result = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "shape": [args.frames, args.tokens, args.dim],
        "retain_ratio": args.ratio,
        "kept_tokens": vec.num_kept,
        "same_output_as_loop": same,
        "vectorised_over_one_pass": med["vectorised"] / med["one_pass"],
        "loop_over_vectorised": med["loop"] / med["vectorised"],
    }
    if "decoder_layer" in med:
        result["vectorised_over_decoder_layer_prefill"] = med["vectorised"] / med["decoder_layer"]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
