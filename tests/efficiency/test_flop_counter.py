"""The analytic FLOP counter against torch's measured count on tiny random models.

``torch.utils.flop_counter.FlopCounterMode`` counts matrix products, convolutions and attention
kernels, the same set the analytic model counts. Eager attention (and eager MoE experts) are used
because on CPU the fused SDPA / grouped-mm kernels are not in the counter's registry. The counts
agree exactly; the tolerance (0.1%) only absorbs future bookkeeping differences.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vcast.efficiency.analytic import llm_prefill_flops, video_geometry, vision_flops
from vcast.efficiency.model_specs import spec_from_hf_config

TOL = 1e-3
TOKENS = dict(image_token_id=290, video_token_id=291, vision_start_token_id=292, vision_end_token_id=293)
ROPE = {"rope_type": "default", "mrope_section": [2, 2, 2], "rope_theta": 1e4}


def _text(**kw):
    base = dict(
        num_hidden_layers=2,
        hidden_size=48,
        intermediate_size=80,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,
        vocab_size=300,
        rope_parameters=ROPE,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    return {**base, **kw}


def _eager(model):
    model.set_attn_implementation("eager")
    return model.eval()


def _count(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _llm_count(model, tokens: int) -> int:
    x = torch.randn(1, tokens, model.config.text_config.hidden_size)

    def run():
        h = model.model.language_model(inputs_embeds=x).last_hidden_state
        model.lm_head(h[:, -1:])

    return _count(run)


def _qwen_vision_count(model, spec, frames, height, width):
    g = video_geometry(spec, frames, height, width)
    v = spec.vision
    pixels = torch.randn(g.groups * g.patches_per_group, 3 * v.temporal_patch_size * v.patch_size**2)
    grid = torch.tensor([[g.groups, g.grid_h, g.grid_w]])
    return _count(lambda: model.model.visual(pixels, grid_thw=grid)), vision_flops(spec, g, None, None)[
        "total"
    ]


def test_qwen3_vl_vision_and_llm():
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    cfg = Qwen3VLConfig(
        vision_config=dict(
            depth=3,
            hidden_size=64,
            intermediate_size=96,
            num_heads=4,
            patch_size=16,
            out_hidden_size=48,
            deepstack_visual_indexes=[0, 2],
            num_position_embeddings=64,
        ),
        text_config=_text(),
        **TOKENS,
    )
    model = _eager(Qwen3VLForConditionalGeneration(cfg))
    spec = spec_from_hf_config(model.config)
    measured, analytic = _qwen_vision_count(model, spec, 6, 128, 96)
    assert analytic == pytest.approx(measured, rel=TOL)
    for tokens in (1, 57):
        assert llm_prefill_flops(spec, tokens, "dense")["total"] == pytest.approx(
            _llm_count(model, tokens), rel=TOL
        )


def test_qwen3_vl_moe_llm_counts_active_experts():
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    cfg = Qwen3VLMoeConfig(
        vision_config=dict(
            depth=1,
            hidden_size=32,
            intermediate_size=48,
            num_heads=2,
            patch_size=16,
            out_hidden_size=48,
            deepstack_visual_indexes=[0],
            num_position_embeddings=64,
        ),
        text_config=_text(moe_intermediate_size=24, num_experts=6, num_experts_per_tok=2),
        **TOKENS,
    )
    model = _eager(Qwen3VLMoeForConditionalGeneration(cfg))
    model.set_experts_implementation("eager")
    spec = spec_from_hf_config(model.config)
    assert spec.text.num_experts == 6 and spec.text.experts_per_token == 2
    assert llm_prefill_flops(spec, 37, "dense")["total"] == pytest.approx(_llm_count(model, 37), rel=TOL)


def test_qwen2_5_vl_windowed_vision():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    cfg = Qwen2_5_VLConfig(
        vision_config=dict(
            depth=3,
            hidden_size=32,
            intermediate_size=40,
            num_heads=2,
            patch_size=14,
            out_hidden_size=48,
            window_size=112,
            fullatt_block_indexes=[1],
        ),
        text_config=_text(num_hidden_layers=1),
        **TOKENS,
    )
    model = _eager(Qwen2_5_VLForConditionalGeneration(cfg))
    spec = spec_from_hf_config(model.config)
    # 16 x 14 patches: 8 x 7 merged tokens, i.e. windows of 4x4, 4x3, 4x4, 4x3 merged tokens
    measured, analytic = _qwen_vision_count(model, spec, 4, 224, 196)
    assert analytic == pytest.approx(measured, rel=TOL)


def test_llava_onevision_vision_and_projector():
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    cfg = LlavaOnevisionConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
            vision_use_head=False,
        ),
        text_config=dict(
            model_type="qwen2",
            num_hidden_layers=1,
            hidden_size=48,
            intermediate_size=80,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=300,
        ),
        image_token_index=290,
        video_token_index=291,
    )
    model = _eager(LlavaOnevisionForConditionalGeneration(cfg))
    spec = spec_from_hf_config(model.config)
    frames = 3
    g = video_geometry(spec, frames, 448, 448)
    assert (g.groups, g.patches_per_group, g.tokens_per_group) == (3, 16, 4)
    pixels = torch.randn(1, frames, 3, 56, 56)
    measured = _count(
        lambda: model.model.get_video_features(
            pixels, vision_feature_layer=-1, vision_feature_select_strategy="full"
        )
    )
    assert vision_flops(spec, g, None, None)["total"] == pytest.approx(measured, rel=TOL)
    assert llm_prefill_flops(spec, 21, "dense")["total"] == pytest.approx(_llm_count(model, 21), rel=TOL)


def test_qwen2_vl_vision():
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    cfg = Qwen2VLConfig(
        vision_config=dict(depth=2, embed_dim=32, mlp_ratio=2, num_heads=2, patch_size=14, hidden_size=48),
        text_config=_text(num_hidden_layers=1),
        **TOKENS,
    )
    model = _eager(Qwen2VLForConditionalGeneration(cfg))
    spec = spec_from_hf_config(model.config)
    assert spec.vision.intermediate == 64 and spec.early_pruning
    measured, analytic = _qwen_vision_count(model, spec, 4, 112, 168)
    assert analytic == pytest.approx(measured, rel=TOL)
