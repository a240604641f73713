"""The cost model of hybrid LLMs (Qwen3.5: Gated DeltaNet layers next to softmax attention)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import vcast.testing as vt
from vcast.efficiency import compare
from vcast.efficiency.analytic import llm_prefill_flops, prefill_cost
from vcast.efficiency.model_specs import get_spec, spec_from_hf_config

PROJECTIONS = ("in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj", "q_proj", "k_proj", "v_proj",
               "o_proj", "gate_proj", "up_proj", "down_proj")


def test_projections_and_convolution_match_torchs_count_on_a_tiny_qwen3_5():
    model, _ = vt.tiny_model("qwen3_5", attn_implementation="eager")
    # No parameter asks for gradients: with the `kernels` package installed (transformers 5.25 pulls it in),
    # the hub-kernel layer passes the convolution's weight as a module input, and FlopCounterMode's module
    # tracker then tries to hook gradients of a tensor that has none, even under no_grad.
    model.requires_grad_(False)
    spec = spec_from_hf_config(model.config)
    assert (spec.text.linear_layers, spec.text.attention_layers, spec.text.attn_output_gate) == (1, 1, True)
    tokens = 96
    x = torch.randn(1, tokens, model.config.text_config.hidden_size)
    with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
        model.model.language_model(inputs_embeds=x)
    counts = counter.get_flop_counts()
    projections = sum(sum(ops.values()) for name, ops in counts.items() if name.split(".")[-1] in PROJECTIONS)
    conv = sum(n for name, ops in counts.items() if name.endswith("linear_attn")
               for op, n in ops.items() if "convolution" in str(op))
    assert conv > 0
    analytic = llm_prefill_flops(spec, tokens, "dense")
    assert projections + conv == analytic["linear"]
    # the chunked recurrence: counted as 6 dk dv per token and value head, torch's kernel adds chunk bookkeeping
    total = counter.get_total_flops()
    assert analytic["total"] - analytic["lm_head"] <= total <= 1.25 * (analytic["total"] - analytic["lm_head"])


def test_only_attention_layers_hold_a_kv_cache():
    spec = get_spec("qwen3.5-27b")
    dense = dataclasses.replace(spec, text=dataclasses.replace(spec.text, linear_layers=0))
    a, b = prefill_cost(spec, frames=16), prefill_cost(dense, frames=16)
    assert a["kv_cache_bytes"] * 4 == b["kv_cache_bytes"]  # 16 of 64 layers attend
    assert a["llm_breakdown"]["attention"] < b["llm_breakdown"]["attention"]


@pytest.mark.parametrize("name", ["qwen3.5-27b"])
def test_pruning_saves_on_the_new_specs(name):
    r = compare(name, frames=32, height=448, width=448, retain_ratio=0.25)
    assert r["kept_visual_tokens"] == round(r["vanilla"]["visual_tokens"] * 0.25)
    assert 0 < r["llm_prefill_flops_ratio"] < 0.5 and 0 < r["kv_cache_ratio"] < 0.5
    assert get_spec(name).notes["verified"]
