"""vcast.stream on tiny models: exactness against offline generate, the offline pruned selection,
causality, the cache cap, bad input and question semantics."""

from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest
import torch
from conftest import QUESTION, _clip, _feed, _offline, _times, _until_eos, tiny

import vcast
from vcast.errors import ConfigError, InputError, UnsupportedModelError

# every streamed family: r = 1.0 in chunks of 1, 2 and 7 frames equals offline generate
TYPES = ["qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl", "llava_onevision", "qwen3_5", "qwen3_5_moe", "glm4v",
         "glm4v_moe", "glm46v", "gemma4", "llava_next_video", "video_llama_3"]


@pytest.mark.parametrize("model_type", TYPES)
@pytest.mark.parametrize("chunk", [1, 2, 7])
def test_ratio_one_in_chunks_equals_offline_generate(model_type, chunk) -> None:
    model, processor = tiny(model_type)
    clip = _clip()
    logits, tokens, _ = _offline(model, processor, clip)
    s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=1.0))
    _feed(s, clip, chunk)
    answer = s.ask(QUESTION, max_new_tokens=6, output_logits=True)
    torch.testing.assert_close(answer.logits[0], logits, atol=1e-4, rtol=0)
    eos = model.generation_config.eos_token_id
    assert answer.tokens == _until_eos(tokens, eos)
    n = s.family.tokens_per_frame
    assert s.stats["video_tokens"] == s.stats["frames_committed"] * n == len(clip) // s.family.temporal_patch * n


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen2_5_vl", "llava_onevision", "qwen3_5", "glm4v", "gemma4",
                                        "llava_next_video", "video_llama_3"])
@pytest.mark.parametrize("ratio,curvature", [(0.3, "angle"), (0.15, "angle"), (0.3, "robust")])
def test_whole_clip_chunk_keeps_the_offline_pruned_set(model_type, ratio, curvature) -> None:
    model, processor = tiny(model_type)
    clip = _clip(12)
    cfg = vcast.VCastConfig(retain_ratio=ratio, curvature=curvature)
    logits, tokens, selection = _offline(model, processor, clip, cfg, max_new_tokens=4)
    s = vcast.stream(model, processor, cfg)
    s.add_frames(clip, timestamps=_times(0, len(clip)))
    answer = s.ask(QUESTION, max_new_tokens=4, output_logits=True)
    kept = s.selection()
    assert torch.equal(kept.keep_index, selection.keep_index)
    assert torch.equal(kept.frame_budget, selection.frame_budget)
    torch.testing.assert_close(answer.logits[0], logits, atol=1e-4, rtol=0)
    assert answer.tokens == _until_eos(tokens, model.generation_config.eos_token_id)


@pytest.mark.parametrize("model_type", ["qwen3_vl", "llava_onevision"])
def test_kept_tokens_of_a_frame_never_change_later(model_type) -> None:
    model, processor = tiny(model_type)
    clip = _clip(24, seed=5)
    s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=0.25))
    seen: dict[int, list[int]] = {}
    n = None
    for i in range(0, len(clip), 3):
        s.add_frames(clip[i:i + 3], timestamps=_times(i, i + 3))
        if not s.stats["frames_committed"]:
            continue
        sel = s.selection()
        n = sel.tokens_per_frame
        for f in range(sel.num_frames):
            kept = sel.keep_index[(sel.keep_index // n) == f].tolist()
            assert seen.setdefault(f, kept) == kept
    assert len(seen) >= 10 and n is not None


@pytest.mark.parametrize("model_type,cap", [("qwen3_vl", 400), ("qwen2_5_vl", 60), ("llava_onevision", 60),
                                            ("qwen3_5", 400), ("gemma4", 400)])
def test_the_cap_bounds_every_slot_the_video_holds(model_type, cap) -> None:
    model, processor = tiny(model_type)
    clip = _clip(120, seed=7, size=32)
    s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=0.5), max_video_tokens=cap)
    prefix = None
    for i in range(0, len(clip), 2):
        report = s.add_frames(clip[i:i + 2], timestamps=_times(i, i + 2))
        assert report["video_tokens"] <= report["video_slots"] <= cap
        assert len(s._cache.table) == report["cache_length"]
        if report["cache_length"]:
            prefix = report["cache_length"] - report["video_slots"] if prefix is None else prefix
            # the cache is the prompt's prefix plus at most `cap` slots of video tokens and frame text
            assert report["cache_length"] - report["video_slots"] == prefix
    st = s.stats
    assert st["evicted"] > 0 and st["video_tokens"] <= st["video_slots"] <= cap
    table = s._cache.table
    text = int((~table.video & (table.frame >= 0)).sum())
    assert st["video_slots"] == st["video_tokens"] + text
    assert (text > 0) == (model_type in ("qwen3_vl", "qwen3_5", "gemma4"))  # per-frame text counts against the cap
    assert st["video_slots"] > cap - 30  # and the cap is used, not left empty
    # the skeleton keeps old frames: some token from the first quarter of the stream survives
    sel = s.selection()
    assert int(sel.frame_budget[: sel.num_frames // 4].sum()) > 0
    assert s.ask(QUESTION, max_new_tokens=2).video_tokens <= cap  # commits the frame still waiting
    length = s.stats["cache_length"]
    s.ask(QUESTION, max_new_tokens=2)
    assert s.stats["cache_length"] == length <= prefix + cap


def test_a_cap_too_small_for_one_frame_is_refused() -> None:
    model, processor = tiny("qwen3_vl")
    with pytest.raises(ConfigError, match="cannot hold one frame"):
        vcast.stream(model, processor, max_video_tokens=5)  # one frame's "<0.0 seconds>" text alone is longer


def test_eviction_keeps_each_frame_a_prefix_of_its_ranking() -> None:
    model, processor = tiny("llava_onevision")
    clip = _clip(40, seed=2)
    s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=0.5), max_video_tokens=50)
    _feed(s, clip, 4)
    table = s._cache.table
    for f in torch.unique(table.frame[table.video]).tolist():
        ranks = sorted(table.rank[table.video & (table.frame == f)].tolist())
        assert ranks == list(range(len(ranks)))


@pytest.mark.parametrize("model_type", ["qwen3_vl", "llava_onevision", "qwen3_5", "gemma4"])
def test_ask_leaves_the_stream_as_it_was(model_type) -> None:
    model, processor = tiny(model_type)
    clip = _clip(16)
    cfg = vcast.VCastConfig(retain_ratio=0.4)
    a, b = vcast.stream(model, processor, cfg), vcast.stream(model, processor, cfg)
    _feed(a, clip[:8], 2)
    _feed(b, clip[:8], 2)
    first = a.ask(QUESTION, max_new_tokens=3, output_logits=True)
    length = a.stats["cache_length"]
    again = a.ask(QUESTION, max_new_tokens=3, output_logits=True)
    assert again.tokens == first.tokens and torch.equal(again.logits, first.logits)
    assert a.stats["cache_length"] == length
    b.ask("Another question entirely?", max_new_tokens=5)
    _feed(a, clip[8:], 2, start=8)  # the stream goes on after questions
    _feed(b, clip[8:], 2, start=8)
    x, y = a.ask(QUESTION, output_logits=True), b.ask(QUESTION, output_logits=True)
    assert x.tokens == y.tokens and torch.equal(x.logits, y.logits)


@pytest.mark.parametrize("model_type", ["qwen3_vl", "llava_onevision"])
def test_bad_input_raises_and_changes_nothing(model_type) -> None:
    model, processor = tiny(model_type)
    clip = _clip(10)
    cfg = vcast.VCastConfig(retain_ratio=0.3)
    s, ref = vcast.stream(model, processor, cfg), vcast.stream(model, processor, cfg)
    with pytest.raises(InputError, match="before any frame"):
        s.ask(QUESTION)
    s.add_frames(clip[:4], timestamps=_times(0, 4))
    ref.add_frames(clip[:4], timestamps=_times(0, 4))
    before = s.stats
    bad = [
        ((_clip(2, size=32),), {"timestamps": _times(4, 6)}, "size"),
        ((clip[4:6],), {"timestamps": [1.0, 1.2]}, "increase"),
        ((clip[4:6],), {"timestamps": [2.5, 2.5]}, "increase"),
        ((clip[4:4],), {"timestamps": []}, "empty"),
        ((clip[4:6],), {"timestamps": [2.0]}, "timestamps"),
        ((clip[4:6].astype(np.float32),), {}, "uint8"),
        ((clip[4],), {}, r"frames\[None\]"),
        ((clip[4:6],), {"timestamps": [2.0, float("nan")]}, "finite"),
    ]
    for args, kwargs, match in bad:
        with pytest.raises(InputError, match=match):
            s.add_frames(*args, **kwargs)
    for q, kw, match in (("", {}, "non-empty"), (QUESTION, {"max_new_tokens": 0}, "max_new_tokens")):
        with pytest.raises(InputError, match=match):
            s.ask(q, **kw)
    assert s.stats == before
    s.add_frames(clip[4:], timestamps=_times(4, 10))
    ref.add_frames(clip[4:], timestamps=_times(4, 10))
    x, y = s.ask(QUESTION, output_logits=True), ref.ask(QUESTION, output_logits=True)
    assert torch.equal(x.logits, y.logits)


def test_a_lone_qwen_frame_waits_for_its_temporal_partner() -> None:
    model, processor = tiny("qwen3_vl")
    s = vcast.stream(model, processor)
    report = s.add_frames(_clip(1))
    assert report["encoded"] == 0
    with pytest.raises(InputError, match="temporal patch"):
        s.ask(QUESTION)
    assert s.add_frames(_clip(1, seed=4))["encoded"] == 1
    assert s.ask(QUESTION, max_new_tokens=1).frames == 1


def test_default_timestamps_follow_fps() -> None:
    model, processor = tiny("qwen3_vl")
    clip = _clip(8)
    cfg = vcast.VCastConfig(retain_ratio=0.3)
    a, b = vcast.stream(model, processor, cfg, fps=4.0), vcast.stream(model, processor, cfg)
    a.add_frames(clip[:4])
    a.add_frames(clip[4:])
    b.add_frames(clip[:4], timestamps=[i / 4.0 for i in range(4)])
    b.add_frames(clip[4:], timestamps=[i / 4.0 for i in range(4, 8)])
    x, y = a.ask(QUESTION, output_logits=True), b.ask(QUESTION, output_logits=True)
    assert torch.equal(x.logits, y.logits)


def test_unsupported_models_options_and_handles() -> None:
    model, processor = tiny("qwen3_vl")
    with pytest.raises(ConfigError, match="auto"):
        vcast.stream(model, processor, vcast.VCastConfig(retain_ratio="auto"))
    with pytest.raises(ConfigError, match="VCastConfig"):
        vcast.stream(model, processor, vcast.get_method("evs").config_cls())
    with pytest.raises(ConfigError, match="prune_at"):
        vcast.stream(model, processor, vcast.VCastConfig(prune_at="vision:1"))
    with pytest.raises(ConfigError, match="positions"):
        vcast.stream(*tiny("llava_onevision"), vcast.VCastConfig(positions="compact"))
    with pytest.raises(ConfigError, match="max_video_tokens"):
        vcast.stream(model, processor, max_video_tokens=0)
    with pytest.raises(ConfigError, match="skeleton"):
        vcast.stream(model, processor, max_video_tokens=10, skeleton=0.9)
    with vcast.enabled(model, retain_ratio=0.5), pytest.raises(InputError, match="handle.remove"):
        vcast.stream(model, processor)

    class Other(torch.nn.Module):
        config = type("C", (), {"model_type": "bert"})()

    with pytest.raises(UnsupportedModelError, match="qwen3_vl"):
        vcast.stream(Other(), processor)


def test_custom_template_without_chat_template() -> None:
    model, processor = tiny("qwen3_vl")
    clip = _clip(6)
    template = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "{question}"}]}],
        add_generation_prompt=True, tokenize=False)
    a, b = vcast.stream(model, processor), vcast.stream(model, processor, template=template)
    for s in (a, b):
        s.add_frames(clip, timestamps=_times(0, 6))
    assert torch.equal(a.ask(QUESTION, output_logits=True).logits, b.ask(QUESTION, output_logits=True).logits)
    with pytest.raises(InputError, match="exactly once"):
        vcast.stream(model, processor, template="no video here {question}")


def test_half_precision_model_streams() -> None:
    model, processor = vcast.testing.tiny_model("qwen3_vl", dtype=torch.bfloat16)
    s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=0.3), max_video_tokens=20)
    _feed(s, _clip(12), 2)
    answer = s.ask(QUESTION, max_new_tokens=2)
    assert answer.video_tokens <= 20 and len(answer.tokens) >= 1


@pytest.mark.parametrize("model_type", ["qwen3_vl", "llava_onevision"])
@pytest.mark.parametrize("chunk", [1, 3])
def test_stream_selection_is_the_causal_rule_on_its_features(model_type, chunk) -> None:
    from vcast.core.causal import causal_select

    model, processor = tiny(model_type)
    clip = _clip(18, seed=9)
    cfg = vcast.VCastConfig(retain_ratio=0.3)
    s = vcast.stream(model, processor, cfg)
    tp = s.family.temporal_patch
    _feed(s, clip, chunk * tp)
    s.ask(QUESTION, max_new_tokens=1)
    features = s.family.encode(clip).features
    expected = causal_select(features, cfg, chunk=chunk)
    got = s.selection()
    assert torch.equal(got.keep_index, expected.keep_index)
    assert torch.equal(got.frame_budget, expected.frame_budget)


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen2_5_vl", "llava_onevision"])
def test_frames_the_processor_resizes_stream_at_one_fixed_size(model_type) -> None:
    model, processor = tiny(model_type)
    clip = vcast.testing.random_video(8, 72, 90, seed=1)  # not a multiple of the patch grid
    logits, _, _ = _offline(model, processor, clip)
    s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=1.0))
    _feed(s, clip, 2)
    torch.testing.assert_close(s.ask(QUESTION, max_new_tokens=1, output_logits=True).logits[0], logits,
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_type", ["qwen3_vl", "llava_onevision"])
def test_the_vision_tower_runs_once_per_frame(model_type) -> None:
    model, processor = tiny(model_type)
    inner = model.model
    vanilla = inner.get_video_features
    seen = []

    @functools.wraps(vanilla)
    def counting(*args, **kwargs):
        bound = inspect.signature(vanilla).bind(*args, **kwargs).arguments
        grid = bound.get("video_grid_thw")
        seen.append(int(grid[:, 0].sum()) if grid is not None else int(bound["pixel_values_videos"].shape[1]))
        return vanilla(*args, **kwargs)

    inner.get_video_features = counting
    try:
        s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=0.3), max_video_tokens=40)
        _feed(s, _clip(15), 3)
        s.ask(QUESTION, max_new_tokens=2)
        s.ask(QUESTION, max_new_tokens=2)
    finally:
        del inner.get_video_features
    # LLM frames encoded: every complete temporal patch once (Qwen: 7 of 15 frames' pairs; LLaVA: 15)
    assert sum(seen) == 15 // s.family.temporal_patch == s.stats["frames_committed"]
