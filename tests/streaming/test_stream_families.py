"""The stream's families: built on the family layer's declarations, the hybrid Qwen3.5 cache, Gemma 4's
sliding windows, and the families streams refuse (saying why)."""

from __future__ import annotations

import pytest
import torch
from conftest import QUESTION, _clip, _feed, _offline, _until_eos, tiny

import vcast
from vcast.errors import ConfigError, UnsupportedModelError
from vcast.models.base import _REGISTRY
from vcast.streaming.families import NOT_STREAMED, SPECS, StreamFamily, streamed_model_types


def test_every_family_of_the_family_layer_is_streamed_or_says_why() -> None:
    names = {cls.family_name for classes in _REGISTRY.values() for cls in classes[:1] if hasattr(cls, "describe")}
    assert names - set(SPECS) - set(NOT_STREAMED) == set()
    assert set(SPECS) <= names and not set(SPECS) & set(NOT_STREAMED)
    types = streamed_model_types()
    assert {"qwen3_vl", "qwen3_5", "glm4v", "gemma4", "llava_next_video", "video_llama_3"} <= set(types)
    assert "molmo2" not in types and "internvl" not in types


@pytest.mark.parametrize("model_type,why", [("molmo2", "bidirectional block over the whole video"),
                                            ("qwen2_5_omni_thinker", "audio")])
def test_families_a_stream_cannot_serve_raise_saying_why(model_type, why) -> None:
    model, processor = tiny(model_type)
    with pytest.raises(UnsupportedModelError, match=why):
        vcast.stream(model, processor)


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen2_5_vl", "glm46v", "gemma4", "video_llama_3"])
def test_the_stream_family_reads_the_adapters_declarations(model_type) -> None:
    model, processor = tiny(model_type)
    family = StreamFamily(model, processor, vcast.VCastConfig())
    info = type(family.adapter).describe()
    assert family.inner is family.adapter.hook_module
    assert family.mrope == (info["positions"] == "mrope") and family.stacked == (model_type == "qwen2_5_vl")
    enc = family.encode(_clip(4))
    assert enc.features.shape[:2] == (4 // family.temporal_patch, family.tokens_per_frame)
    assert len(enc.extras) == (len(model.config.vision_config.deepstack_visual_indexes)
                               if "deepstack_features" in info["side_features"] else 0)


def test_hybrid_qwen3_5_questions_work_on_a_copy_of_the_recurrent_state() -> None:
    model, processor = tiny("qwen3_5")
    clip = _clip(12)
    cfg = vcast.VCastConfig(retain_ratio=0.4)
    s = vcast.stream(model, processor, cfg)
    _feed(s, clip[:8], 2)
    s.ask(QUESTION, max_new_tokens=1)  # commits the waiting frame: the state below is the stream's own
    linear = [layer for layer in s._cache.kv.layers if hasattr(layer, "recurrent_states")]
    assert linear and all(layer.recurrent_states[0] is not None for layer in linear)
    before = [(layer.recurrent_states[0].clone(), layer.conv_states[0].clone()) for layer in linear]
    tensors = [layer.recurrent_states[0] for layer in linear]
    s.ask("A longer question than the first one, to move the state?", max_new_tokens=4)
    for layer, (rec, conv), t in zip(linear, before, tensors):
        assert layer.recurrent_states[0] is t  # the stream's own tensor is back
        assert torch.equal(layer.recurrent_states[0], rec) and torch.equal(layer.conv_states[0], conv)


def test_hybrid_qwen3_5_evicts_from_its_attention_layers_only() -> None:
    model, processor = tiny("qwen3_5")
    s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=0.5), max_video_tokens=200)
    _feed(s, _clip(40, size=32), 2)
    assert s.stats["evicted"] > 0 and s.stats["video_slots"] <= 200
    for layer in s._cache.kv.layers:
        if hasattr(layer, "keys") and layer.keys is not None:
            assert layer.keys.shape[-2] == len(s._cache.table)
    assert len(s.ask(QUESTION, max_new_tokens=2).tokens) >= 1


def test_gemma4_stream_longer_than_its_sliding_window_equals_offline() -> None:
    model, processor = tiny("gemma4", sliding_window=100)  # one frame is 64 tokens and its text
    clip = _clip(8)
    logits, tokens, _ = _offline(model, processor, clip)
    s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=1.0))
    _feed(s, clip, 3)
    assert s.stats["cache_length"] > 100
    answer = s.ask(QUESTION, max_new_tokens=6, output_logits=True)
    torch.testing.assert_close(answer.logits[0], logits, atol=1e-4, rtol=0)
    assert answer.tokens == _until_eos(tokens, model.generation_config.eos_token_id)


def test_gemma4_cap_must_fit_its_sliding_window() -> None:
    model, processor = tiny("gemma4", sliding_window=100)
    with pytest.raises(ConfigError, match="sliding-window"):
        vcast.stream(model, processor, max_video_tokens=100)
    s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=0.5), max_video_tokens=80)
    for report in _feed(s, _clip(10), 2):
        assert report["video_slots"] <= 80 and report["cache_length"] <= 99
    assert s.stats["evicted"] > 0
    s.ask(QUESTION, max_new_tokens=1)  # commits the frame still waiting
    length = s.stats["cache_length"]
    assert length <= 99
    s.ask("A question long enough to slide the window past the video, surely, yes?", max_new_tokens=3)
    assert s.stats["cache_length"] == length  # the windows are back where they were
    assert s.ask(QUESTION, max_new_tokens=1).video_tokens <= 80
