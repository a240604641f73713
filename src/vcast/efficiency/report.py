"""The ``vcast bench efficiency`` tables: analytic rows for every model x clip x method x ratio x
pruning point, and the plot."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import torch

from vcast.efficiency.analytic import compare, default_vision_block, video_geometry
from vcast.efficiency.model_specs import MODEL_SPECS, get_spec

DEFAULT_RATIOS = (0.5, 0.25, 0.15, 0.1)
DEFAULT_FRAMES = (32, 64)


@cache
def kept_count(method: str, groups: int, token_h: int, token_w: int, ratio: float) -> tuple[int, bool]:
    """``(K, merges)``: how many tokens ``method`` keeps of a video of ``groups`` frames of
    ``token_h x token_w`` tokens at ``ratio`` (run on seeded random features; every registered
    method's K depends only on the shape and the ratio), and whether the method merges features."""
    from vcast.methods import get_method, make_config
    from vcast.methods.grid import run_with_grids

    spec = get_method(method)
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(groups, token_h * token_w, 16, generator=gen)
    sel = run_with_grids(spec, [features], make_config(method, retain_ratio=ratio), [(token_h, token_w)])[0]
    return sel.num_kept, spec.merges


def analytic_rows(
    models: Sequence[str] | None = None,
    frames: Sequence[int] = DEFAULT_FRAMES,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    methods: Sequence[str] | None = None,
    height: int = 448,
    width: int = 448,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Pruned / vanilla prefill FLOP and KV-cache ratios for every combination (``progress`` is
    called with each model's name before its rows are counted).

    Each method's kept count comes from running it (:func:`kept_count`). ``prune_at="vision:k"``
    rows (k = :func:`~vcast.efficiency.default_vision_block`) appear for models whose tower allows
    early pruning and for non-merging methods.
    """
    from vcast.methods import list_methods

    rows = []
    for name in models or list(MODEL_SPECS):
        if progress:
            progress(name)
        spec = get_spec(name)
        points = ["llm"] + ([f"vision:{default_vision_block(spec)}"] if spec.early_pruning is None else [])
        for f in frames:
            g = video_geometry(spec, f, height, width)
            for method in methods or list_methods():
                for ratio in ratios:
                    kept, merges = kept_count(method, g.groups, g.token_h, g.token_w, ratio)
                    for prune_at in points:
                        if merges and prune_at != "llm":
                            continue
                        r = compare(spec, f, height, width, ratio, prune_at, kept_tokens=kept)
                        rows.append(
                            {
                                "model": spec.name,
                                "frames": f,
                                "method": method,
                                "ratio": ratio,
                                "prune_at": prune_at,
                                "vision_flops_ratio": r["vision_flops_ratio"],
                                "llm_prefill_flops_ratio": r["llm_prefill_flops_ratio"],
                                "total_prefill_flops_ratio": r["total_prefill_flops_ratio"],
                                "kv_cache_ratio": r["kv_cache_ratio"],
                                "visual_tokens": r["visual_tokens"],
                                "kept_visual_tokens": kept,
                                "vanilla_total_prefill_tflops": r["vanilla"]["total_flops"] / 1e12,
                                "vanilla_vision_share": r["vanilla"]["vision_flops"]
                                / r["vanilla"]["total_flops"],
                            }
                        )
    return rows


def plot(
    analytic: Sequence[dict], measured: Sequence[dict], path: str, method: str = "vcast", frames: int = 64
) -> None:
    """Left: analytic total prefill FLOPs ratio vs retain ratio per model (solid: after the encoder,
    dashed: inside it). Right: measured ratios of the scaled model (post vs early)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(dict.fromkeys(r["model"] for r in analytic)):
        for early in (False, True):
            pts = sorted(
                (r["ratio"], r["total_prefill_flops_ratio"])
                for r in analytic
                if r["model"] == name
                and r["method"] == method
                and r["frames"] == frames
                and (r["prune_at"] != "llm") == early
            )
            if pts:
                ax.plot(
                    *zip(*pts),
                    "--" if early else "-",
                    marker="o",
                    ms=3,
                    color=colors[i % len(colors)],
                    label=f"{name}{' (vision:k)' if early else ''}",
                )
    ax.plot([0, 0.55], [0, 0.55], ":", color="grey", lw=1, label="y = retain ratio")
    ax.set(
        xlabel="retain ratio",
        ylabel="prefill FLOPs, pruned / vanilla",
        xlim=(0, 0.55),
        ylim=(0, 1),
        title=f"Analytic ({method}, {frames} frames, 448x448)",
    )
    ax.legend(fontsize=7, ncol=2)
    keys = (
        "prefill_latency_ratio",
        "generate_latency_ratio",
        "peak_memory_ratio",
        "analytic_total_prefill_flops_ratio",
    )
    rows = [r for r in measured if r.get("ratio") == 0.25] or list(measured)
    width = 0.8 / max(1, len(rows))
    for j, r in enumerate(rows):
        vals = [r.get(k) or 0.0 for k in keys]
        xs = [k + (j - (len(rows) - 1) / 2) * width for k in range(len(keys))]
        bars = bx.bar(xs, vals, width, label=f"{r['mode']} ({r['prune_at']}), r={r['ratio']}")
        bx.bar_label(bars, fmt="%.2f", fontsize=7)
    bx.set_xticks(range(len(keys)), ["prefill", "generate", "peak mem", "FLOPs (analytic)"])
    bx.axhline(1.0, color="grey", lw=1)
    device = measured[0]["device"] if measured else "?"
    bx.set(ylabel="pruned / vanilla", ylim=(0, 1.15), title=f"Measured, scaled Qwen3-VL on {device}")
    if rows:
        bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
