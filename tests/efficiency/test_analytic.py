"""Analytic cost model: geometry of real configs, invariants, errors."""

from __future__ import annotations

import pytest

from vcast.efficiency import (
    MODEL_SPECS,
    compare,
    default_vision_block,
    get_spec,
    prefill_cost,
    video_geometry,
)
from vcast.errors import ConfigError

RATIOS = (0.5, 0.25, 0.15, 0.1)


def test_token_geometry_of_published_configs():
    g = video_geometry("qwen3-vl-8b", 32, 448, 448)  # patch 16, merge 2, temporal 2
    assert (g.groups, g.grid_h, g.grid_w, g.tokens_per_group) == (16, 28, 28, 196)
    g = video_geometry("qwen2.5-vl-7b", 64, 448, 448)  # patch 14
    assert (g.groups, g.tokens_per_group, g.visual_tokens) == (32, 256, 8192)
    g = video_geometry("llava-ov-7b", 32, 448, 448)  # 384 px SigLIP, 27x27 patches, pooled to 14x14
    assert (g.groups, g.patches_per_group, g.tokens_per_group) == (32, 729, 196)
    assert video_geometry("qwen3-vl-8b", 33, 448, 448).groups == 17  # odd frame count is padded


def test_vanilla_magnitudes_are_plausible():
    # Qwen3-VL-8B: ~7B non-embedding LLM params -> ~2 * 7e9 FLOPs per token; 3.3k tokens -> ~50 TFLOPs
    r = prefill_cost("qwen3-vl-8b", 32, 448, 448)
    assert 4.0e13 < r["llm_flops"] < 6.0e13
    assert 1.0e13 < r["vision_flops"] < 1.5e13
    # KV cache: 2 * 36 layers * 8 heads * 128 * 2 bytes = 147456 bytes per token
    assert r["kv_cache_bytes"] == 147456 * r["llm_tokens"]


@pytest.mark.parametrize("name", sorted(MODEL_SPECS))
def test_ratio_one_is_vanilla_and_ratios_fall(name):
    spec = get_spec(name)
    modes = ["llm"] + ([f"vision:{default_vision_block(spec)}"] if spec.early_pruning is None else [])
    for mode in modes:
        same = compare(name, 32, 448, 448, 1.0, mode)
        for key in (
            "vision_flops_ratio",
            "llm_prefill_flops_ratio",
            "total_prefill_flops_ratio",
            "kv_cache_ratio",
        ):
            assert same[key] == pytest.approx(1.0, abs=1e-12)
        prev = 1.0
        for r in RATIOS:
            out = compare(name, 64, 448, 448, r, mode)
            assert out["total_prefill_flops_ratio"] < prev
            prev = out["total_prefill_flops_ratio"]
            if mode == "llm":
                assert out["vision_flops_ratio"] == 1.0
            else:
                assert out["vision_flops_ratio"] < 1.0
            # the cache holds text + kept tokens: its ratio is the token ratio
            assert out["kv_cache_ratio"] == pytest.approx(out["llm_tokens"] / out["vanilla"]["llm_tokens"])


def test_early_pruning_saves_more_than_post_encoder():
    post = compare("qwen3-vl-8b", 64, 448, 448, 0.25, "llm")
    early = compare("qwen3-vl-8b", 64, 448, 448, 0.25, "vision:6")
    assert early["llm_flops"] == post["llm_flops"]
    assert early["vision_flops_ratio"] < 0.5 < post["vision_flops_ratio"]
    assert early["total_prefill_flops_ratio"] < post["total_prefill_flops_ratio"]
    # pruning after the last block only saves the mergers' work
    late = compare("qwen3-vl-8b", 64, 448, 448, 0.25, "vision:26")
    assert early["vision_flops"] < late["vision_flops"] < post["vision_flops"]


def test_uneven_frame_budget_raises_only_the_attention_term():
    even = prefill_cost("qwen3-vl-8b", 8, 448, 448, 0.25, "vision:6")
    kept = even["kept_visual_tokens"]
    skew = prefill_cost("qwen3-vl-8b", 8, 448, 448, 0.25, "vision:6", frame_budget=[kept - 96, 50, 45, 1])
    assert skew["vision_breakdown"]["blocks_linear"] == even["vision_breakdown"]["blocks_linear"]
    assert skew["vision_breakdown"]["blocks_attention"] > even["vision_breakdown"]["blocks_attention"]


def test_moe_counts_active_experts_only():
    moe = get_spec("qwen3-vl-30b-a3b")
    r = prefill_cost(moe, 32)
    dense_equivalent = (
        2 * r["llm_tokens"] * moe.text.layers * 3 * moe.text.hidden * moe.text.num_experts * 768
    )
    assert r["llm_flops"] < dense_equivalent / 4


def test_errors():
    with pytest.raises(ConfigError, match="windows"):
        prefill_cost("qwen2.5-vl-7b", 32, 448, 448, 0.25, "vision:8")
    with pytest.raises(ConfigError, match="LLaVA"):
        prefill_cost("llava-ov-7b", 32, 448, 448, 0.25, "vision:6")
    with pytest.raises(ConfigError, match="outside"):
        prefill_cost("qwen3-vl-8b", 32, 448, 448, 0.25, "vision:27")
    with pytest.raises(ConfigError, match="prune_at"):
        prefill_cost("qwen3-vl-8b", 32, 448, 448, 0.25, "vision")
    for bad in (0, 1.5, float("nan"), True):
        with pytest.raises(ConfigError):
            prefill_cost("qwen3-vl-8b", 32, 448, 448, bad)
    with pytest.raises(ConfigError, match="frames"):
        prefill_cost("qwen3-vl-8b", 0)
    with pytest.raises(ConfigError, match="no model spec"):
        prefill_cost("gpt-5")
    with pytest.raises(ConfigError, match="frame_budget"):
        prefill_cost("qwen3-vl-8b", 4, 448, 448, 0.5, "vision:2", frame_budget=[1, 1])
    with pytest.raises(ConfigError, match="frame_budget"):
        prefill_cost("qwen3-vl-8b", 4, 448, 448, 1.0, "vision:2", kept_tokens=2, frame_budget=[3, -1])
