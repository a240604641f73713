"""Early pruning inside the Qwen3-VL vision tower (``prune_at="vision:k"``)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from vcast.config import VCastConfig
from vcast.core.selection import Selection
from vcast.efficiency.analytic import video_geometry, vision_flops
from vcast.efficiency.model_specs import spec_from_hf_config
from vcast.errors import ConfigError
from vcast.models.qwen3_vl_early import check_early_pruning_supported, encode_video_early, method_selector

PATCH = 8


@pytest.fixture(scope="module")
def visual():
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(0)
    cfg = Qwen3VLConfig(
        vision_config=dict(
            depth=4,
            hidden_size=32,
            intermediate_size=48,
            num_heads=2,
            patch_size=PATCH,
            out_hidden_size=24,
            deepstack_visual_indexes=[0, 2, 3],
            num_position_embeddings=64,
        ),
        text_config=dict(
            num_hidden_layers=1,
            hidden_size=24,
            intermediate_size=32,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=12,
            vocab_size=300,
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=None,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 2, 2], "rope_theta": 1e4},
        ),
        image_token_id=290,
        video_token_id=291,
        vision_start_token_id=292,
        vision_end_token_id=293,
    )
    model = Qwen3VLForConditionalGeneration(cfg).eval()
    model.set_attn_implementation("eager")
    return model


def _inputs(grids):
    pixels = torch.randn(sum(t * h * w for t, h, w in grids), 3 * 2 * PATCH * PATCH)
    return pixels, torch.tensor(grids)


def _full(model, pixels, grid):
    with torch.no_grad():
        return model.model.get_video_features(pixels, grid, return_dict=True)


def test_ratio_one_equals_the_full_tower(visual):
    pixels, grid = _inputs([(3, 4, 6), (2, 6, 4)])
    full = _full(visual, pixels, grid)
    for k in (0, 1, 3):
        early = encode_video_early(
            visual.model.visual, pixels, grid, k, method_selector(VCastConfig(retain_ratio=1.0))
        )
        for a, b in zip(early.pooler_output, full.pooler_output):
            assert torch.equal(a, b)
        for level_a, level_b in zip(early.deepstack_features, full.deepstack_features):
            for a, b in zip(level_a, level_b):
                assert torch.equal(a, b)


def _frames_selector(keep_frames):
    """Keep every token of the listed frames of video 0, nothing of its other frames."""

    def select(videos, grids):
        t, n, _ = videos[0].shape
        budget = torch.tensor([n if f in keep_frames else 0 for f in range(t)])
        keep = torch.cat([torch.arange(f * n, (f + 1) * n) for f in sorted(keep_frames)])
        return [Selection(keep, budget, torch.zeros(t), t, n)]

    return select


def test_kept_frames_see_exactly_their_own_computation(visual):
    """Attention is per temporal group: a frame kept whole gets the full tower's output, even when the
    frames around it are dropped (checks cu_seqlens, rotary rows and deepstack taps line up)."""
    pixels, grid = _inputs([(3, 4, 4)])
    full = _full(visual, pixels, grid)
    early = encode_video_early(visual.model.visual, pixels, grid, 1, _frames_selector({0, 2}))
    n = 4
    expect = torch.cat([full.pooler_output[0][:n], full.pooler_output[0][2 * n :]])
    torch.testing.assert_close(early.pooler_output[0], expect, rtol=1e-5, atol=1e-6)
    for level_early, level_full in zip(early.deepstack_features, full.deepstack_features):
        expect = torch.cat([level_full[0][:n], level_full[0][2 * n :]])
        torch.testing.assert_close(level_early[0], expect, rtol=1e-5, atol=1e-6)


def test_pruned_outputs_are_aligned_per_video(visual):
    pixels, grid = _inputs([(4, 4, 6), (2, 4, 4)])
    early = encode_video_early(
        visual.model.visual, pixels, grid, 1, method_selector(VCastConfig(retain_ratio=0.25))
    )
    for b, sel in enumerate(early.selections):
        assert early.pooler_output[b].shape == (sel.num_kept, 24)
        assert all(level[b].shape == (sel.num_kept, 24) for level in early.deepstack_features)
        assert int(sel.frame_budget.sum()) == sel.num_kept
    assert [s.num_frames * s.tokens_per_frame for s in early.selections] == [24, 8]
    assert early.last_hidden_state.shape[0] == 4 * sum(s.num_kept for s in early.selections)


def test_encoder_flops_match_the_analytic_early_count(visual):
    pixels, grid = _inputs([(4, 4, 6)])
    block = 1
    vis = visual.model.visual
    sel = encode_video_early(
        vis, pixels, grid, block, method_selector(VCastConfig(retain_ratio=0.25))
    ).selections
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encode_video_early(vis, pixels, grid, block, lambda videos, grids: sel)
    spec = spec_from_hf_config(visual.config)
    g = video_geometry(spec, 8, 4 * PATCH, 6 * PATCH)
    analytic = vision_flops(spec, g, sel[0].frame_budget.tolist(), block)["total"]
    assert analytic == pytest.approx(counter.get_total_flops(), rel=1e-3)


def test_errors(visual):
    pixels, grid = _inputs([(2, 4, 4)])
    with pytest.raises(ConfigError, match="outside"):
        encode_video_early(visual.model.visual, pixels, grid, 4, method_selector(VCastConfig()))
    for model_type, why in (
        ("qwen2_5_vl", "windows"),
        ("llava_onevision", "pools"),
        ("qwen2_vl", "Qwen3-VL only"),
    ):
        with pytest.raises(ConfigError, match=why):
            check_early_pruning_supported(model_type)
    check_early_pruning_supported("qwen3_vl_moe")


# ----- through the adapter: vcast.api.apply / enabled -------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from vcast.testing import make_inputs, random_video, tiny_model

    model, processor = tiny_model("qwen3_vl", vision_depth=4)
    return model, make_inputs(processor, "Describe.", videos=[random_video(8, 64, 64)])


def test_generate_at_ratio_one_equals_vanilla(tiny):
    from vcast.api import enabled

    model, inputs = tiny
    with torch.no_grad():
        ref = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        ref_logits = model(**inputs).logits
        with enabled(model, VCastConfig(retain_ratio=1.0, prune_at="vision:1")) as handle:
            out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
            logits = model(**inputs).logits
    assert type(handle.adapter).__name__ == "Qwen3VLEarlyAdapter"
    assert torch.equal(out, ref) and torch.equal(logits, ref_logits)
    assert "_vcast_handle" not in vars(model) and "get_video_features" not in vars(model.model)


def test_generate_pruned_keeps_the_budget(tiny):
    from vcast.api import enabled

    model, inputs = tiny
    with torch.no_grad(), enabled(model, VCastConfig(retain_ratio=0.25, prune_at="vision:0")) as handle:
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4
    assert handle.stats["video_tokens_after"] == round(0.25 * handle.stats["video_tokens_before"])


def test_unsupported_configs_raise(tiny):
    from vcast.api import apply
    from vcast.testing import tiny_model

    model, _ = tiny
    with pytest.raises(ConfigError, match="merges"):
        apply(model, method="pool", prune_at="vision:1")
    with pytest.raises(ConfigError, match="outside"):
        apply(model, VCastConfig(prune_at="vision:4"))
    windowed, _ = tiny_model("qwen2_5_vl")
    with pytest.raises(ConfigError, match="windows"):
        apply(windowed, VCastConfig(prune_at="vision:0"))
    assert "_vcast_handle" not in vars(model) and "_vcast_handle" not in vars(windowed)
