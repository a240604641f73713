"""The shared family layer (:mod:`vcast.models.family`) and what single families refuse, with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_cache import tiny
from transformers import processing_utils

import vcast
import vcast.testing as vt
from vcast.errors import InputError, UnsupportedModelError
from vcast.models.base import _REGISTRY
from vcast.models.family import FamilyAdapter, VideoShape, register_family
from vcast.models.qwen_vl import Qwen3_5Adapter


def test_families_describe_themselves_as_data():
    d = Qwen3_5Adapter.describe()
    assert d["model_types"] == ["qwen3_5", "qwen3_5_moe"]
    assert (d["placeholder"], d["runs"], d["positions"]) == ("token", "frame", "mrope")
    assert vcast.models.resolve_adapter(tiny("glm46v")[0], vcast.VCastConfig()).describe()["placeholder"] == "mm_type"


def test_a_family_the_installed_transformers_lacks_is_not_registered_and_says_which_version():
    class Future(FamilyAdapter):
        family_name = "Future-VL"
        model_types = ("future_vl_that_does_not_exist",)
        since = "9.1"

    register_family(Future)
    assert "future_vl_that_does_not_exist" not in _REGISTRY
    model, _ = tiny("qwen3_5")
    model.config.model_type = "future_vl_that_does_not_exist"
    try:
        with pytest.raises(UnsupportedModelError, match=r"Future-VL\) needs transformers >= 9.1"):
            vcast.apply(model)
    finally:
        model.config.model_type = "qwen3_5"


def test_protected_tokens_keep_masks():
    shape = VideoShape(2, 1, 2, extra=2, grid_index=torch.tensor([0, 1, 3, 4]))  # a newline after each frame
    assert shape.is_grid().tolist() == [True, True, False, True, True, False]


def _runs_broken(inputs, video_id):
    """The prompt with one text token moved into the middle of the first video run."""
    ids = inputs["input_ids"].clone()
    cols = (ids[0] == video_id).nonzero().flatten()
    first, mid = int(cols[0]), int(cols[len(cols) // 4])
    text = int(ids[0, first - 1])
    ids[0, first - 1], ids[0, mid] = video_id, text  # same counts, different runs
    return {**inputs, "input_ids": ids}


@pytest.mark.parametrize("model_type", ["qwen3_5", "gemma4", "video_llama_3", "minicpmv4_6", "minicpmv4_7"])
def test_a_prompt_layout_the_family_does_not_write_raises(model_type):
    model, processor = tiny(model_type)
    inputs = vt.make_inputs(processor, "Q?", videos=[vt.random_video(4)], use_token_compression=False) \
        if model_type == "video_llama_3" else vt.make_inputs(processor, "Q?", videos=[vt.random_video(4)])
    broken = _runs_broken(inputs, model.config.video_token_id)
    with vcast.enabled(model, retain_ratio=0.5), pytest.raises(InputError, match="does not recognise this prompt"):
        model(**broken)


@pytest.mark.parametrize("model_type", ["minicpmv4_6", "minicpmv4_7"])
def test_minicpmv_frames_are_the_overview_and_its_slices(model_type):
    """A frame is its overview and slices (one video per ``<image_id>`` or separating text); a slice whose
    ``<slice>`` marker is replaced by ``<image>`` reads as a frame cut differently, which vcast refuses."""
    model, processor = tiny(model_type)
    inputs = vt.make_inputs(processor, "Q?", videos=[vt.random_video(3, seed=0), vt.random_video(3, seed=1)])
    with vcast.enabled(model, retain_ratio=0.5) as handle:
        model(**inputs)
        assert [(v["frames"], v["tokens_per_frame"]) for v in handle.stats["videos"]] == [(3, 25), (3, 25)]
        ids = inputs["input_ids"].clone()
        tok = processor.tokenizer
        first_slice = int((ids[0] == tok.convert_tokens_to_ids("<slice>")).nonzero()[0])
        ids[0, first_slice] = tok.convert_tokens_to_ids("<image>")
        with pytest.raises(InputError, match="frames of different units"):
            model(**{**inputs, "input_ids": ids})
    with vcast.enabled(model, method="pool", retain_ratio=0.5), pytest.raises(InputError, match="slice_mode=False"):
        model(**inputs)


def test_videollama3_refuses_a_prompt_its_own_compression_already_thinned():
    model, processor = tiny("video_llama_3")
    static = vt.random_video(4, motion=0.0)
    static[:] = static[:1]  # identical frames: its pixel-difference compression drops most tokens
    inputs = vt.make_inputs(processor, "Q?", videos=[static])
    assert not bool(inputs["video_compression_mask"].all())
    with vcast.enabled(model, retain_ratio=0.5), pytest.raises(InputError, match="use_token_compression=False"):
        model(**inputs)
    plain = vt.make_inputs(processor, "Q?", videos=[static], use_token_compression=False)
    with vcast.enabled(model, retain_ratio=0.5) as handle:
        model(**plain)
        assert handle.stats["video_tokens_after"] < handle.stats["video_tokens_before"]


def test_internvl_needs_its_processor_and_keeps_images_next_to_a_video():
    model, processor = tiny("internvl")
    with pytest.raises(UnsupportedModelError, match="processor=processor"):
        vcast.apply(model, retain_ratio=0.5)
    inputs = vt.make_inputs(processor, "Q?", videos=[vt.random_video(4)], images=[vt.random_image(64, 96)])
    image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum()) - 4 * 16
    seen = []
    with vcast.enabled(model, retain_ratio=0.25, processor=processor) as handle:
        hook = model.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"]), with_kwargs=True)
        try:
            model.generate(**inputs, max_new_tokens=2, do_sample=False)
        finally:
            hook.remove()
        stats = handle.stats
    assert stats["video_tokens_before"] == 64 and stats["video_tokens_after"] == 16
    kept_context = int((seen[0] == model.config.image_token_id).sum())
    assert kept_context == image_tokens + 16  # every image tile token, and the kept frame tokens


def test_qwen_omni_refuses_an_enabled_talker():
    model, _ = tiny("qwen2_5_omni")
    model.has_talker = True
    try:
        with pytest.raises(UnsupportedModelError, match="disable_talker"):
            vcast.apply(model)
    finally:
        model.has_talker = False


@pytest.mark.parametrize("model_type", ["qwen2_5_omni", "qwen3_omni_moe"])
def test_omni_audio_interleaved_with_video_is_untouched(model_type):
    model, processor = tiny(model_type)
    cfg = model.config.thinker_config
    wave = np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32)
    if hasattr(processing_utils, "OmniModalProcessorMixin"):  # transformers >= 5.24's audio-from-video API
        from_video = dict(audio_from_video_indices=[0], load_audio_from_video=True)
    else:
        from_video = dict(use_audio_in_video=True)
    inputs = vt.make_inputs(processor, "What happens?", videos=[vt.random_video(12)], audio=[wave], **from_video)
    ids = inputs["input_ids"][0]
    kinds = [t for t in ids.tolist() if t in (cfg.video_token_id, cfg.audio_token_id)]
    switches = sum(a != b for a, b in zip(kinds, kinds[1:]))
    assert switches >= 3  # video and audio chunks interleave
    thinker = model.thinker
    ref = thinker(**inputs, use_audio_in_video=True).logits
    seen = []
    with vcast.enabled(model, retain_ratio=1.0):
        torch.testing.assert_close(thinker(**inputs, use_audio_in_video=True).logits, ref, atol=1e-5, rtol=0)
    with vcast.enabled(model, retain_ratio=0.25) as handle:
        hook = handle.adapter.hook_module.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"]),
                                                                    with_kwargs=True)
        try:
            thinker.generate(**inputs, use_audio_in_video=True, max_new_tokens=2, do_sample=False)
        finally:
            hook.remove()
        stats = handle.stats
    assert stats["video_tokens_after"] < stats["video_tokens_before"]
    assert int((seen[0] == cfg.audio_token_id).sum()) == int((ids == cfg.audio_token_id).sum())
    assert int((seen[0] == cfg.video_token_id).sum()) == stats["video_tokens_after"]


@pytest.mark.parametrize("model_type", ["internvl", "smolvlm"])
def test_frames_as_image_blocks_refuse_what_their_processor_does_not_write(model_type):
    """A block announced as a frame with a token too few, or a frame number out of order, raises (InternVL, SmolVLM)."""
    model, processor = tiny(model_type)
    inputs = vt.make_inputs(processor, "Q?", videos=[vt.random_video(4)])
    ids = inputs["input_ids"]
    context = (ids[0] == model.config.image_token_id).nonzero().flatten()
    short = torch.cat([ids[:, :int(context[20])], ids[:, int(context[20]) + 1:]], dim=1)  # frame 2 loses a token
    with pytest.raises(UnsupportedModelError, match="processor=processor"):
        vcast.apply(model, retain_ratio=0.5)
    with vcast.enabled(model, retain_ratio=0.5, processor=processor):
        with pytest.raises(InputError, match="does not recognise this prompt layout"):
            model(input_ids=short, pixel_values=inputs["pixel_values"])
        if model_type == "internvl":  # "Frame2:" renamed "Frame3:": out of order
            text = processor.tokenizer.decode(ids[0]).replace("Frame2:", "Frame3:")
            renumbered = processor.tokenizer(text, return_tensors="pt")["input_ids"]
            with pytest.raises(InputError, match="does not recognise this prompt layout"):
                model(input_ids=renumbered, pixel_values=inputs["pixel_values"])
