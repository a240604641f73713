"""The Qwen-VL adapter on tiny random models of all four model types.

The oracle: dropping a token from the prompt is equivalent to masking it out of attention while every
other token keeps its position id. So the pruned model must match the *vanilla* model run with
(a) the unpruned MRoPE ids passed explicitly and (b) a 2-D attention mask with holes at the dropped
video tokens, including greedy decoding with the KV cache.
"""

from __future__ import annotations

import pytest
import torch
from tiny_cache import QWEN_TYPES, cache_of, tiny, with_cache

import vcast
import vcast.testing as vt
from vcast.config import VCastConfig
from vcast.errors import ConfigError, InputError


def _features(model, inputs):
    """Per-video [T, N, D] features of the vanilla encoder."""
    inner = model.model
    enc = inner.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"], return_dict=True)
    merge = inner.config.vision_config.spatial_merge_size
    return [f.view(int(t), int(h * w) // merge**2, -1) for f, (t, h, w) in zip(enc.pooler_output, inputs["video_grid_thw"])]


def _keep_columns(model, inputs, config):
    """BoolTensor[B, L]: columns a pruned prefill keeps (computed independently of the adapter)."""
    sels = vcast.get_method(config.method).run(_features(model, inputs), config)
    video = inputs["input_ids"] == model.config.video_token_id
    keep = ~video
    keep[video] = torch.cat([s.keep_mask().reshape(-1) for s in sels])
    return keep


def _rope(model, inputs):
    extra = {k: inputs[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts") if k in inputs}
    pos, _ = model.model.get_rope_index(inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
                                        attention_mask=inputs["attention_mask"], **extra)
    return pos


def _oracle(model, inputs, keep, steps):
    """Vanilla model, holes in the attention mask, explicit unpruned positions: (last logits, greedy tokens)."""
    pos = _rope(model, inputs)
    mask = inputs["attention_mask"] * keep.long()
    out = model(**{**inputs, "attention_mask": mask, "position_ids": pos}, use_cache=True)
    first = out.logits[:, -1]
    cache, token, last, tokens = cache_of(out), first.argmax(-1), pos[:, :, -1:], []
    for _ in range(steps):
        tokens.append(token)
        last = last + 1
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=last, **with_cache(cache),
                    use_cache=True, mm_token_type_ids=torch.zeros_like(token[:, None]))
        cache, token = cache_of(out), out.logits[:, -1].argmax(-1)
    return first, torch.stack(tokens, dim=1)


def _prompt(processor, frames=(6,), image=True, batch_texts=None, sizes=None):
    sizes = sizes or [(64, 64)] * len(frames)
    videos = [vt.random_video(t, h, w, seed=i) for i, (t, (h, w)) in enumerate(zip(frames, sizes))]
    images = [vt.random_image(32, 48, seed=7)] if image else None
    return vt.make_inputs(processor, batch_texts or "What happens?", videos=videos, images=images)


@pytest.mark.parametrize("model_type", QWEN_TYPES)
def test_ratio_one_is_exact(model_type):
    model, processor = tiny(model_type)
    inputs = _prompt(processor, frames=(5, 3))
    ref = model(**inputs).logits
    ref_gen = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    with vcast.enabled(model, retain_ratio=1.0) as handle:
        torch.testing.assert_close(model(**inputs).logits, ref, atol=1e-5, rtol=0)
        assert torch.equal(model.generate(**inputs, max_new_tokens=5, do_sample=False), ref_gen)
        assert handle.stats["prefill_length_after"] == handle.stats["prefill_length_before"]


@pytest.mark.parametrize("model_type", QWEN_TYPES)
def test_pruned_matches_masked_oracle_with_video_video_and_image(model_type):
    model, processor = tiny(model_type)
    inputs = _prompt(processor, frames=(6, 4))  # two videos and an image in one prompt
    cfg = VCastConfig(retain_ratio=0.3)
    keep = _keep_columns(model, inputs, cfg)
    first, tokens = _oracle(model, inputs, keep, steps=6)
    length = inputs["input_ids"].shape[1]
    dropped = int((~keep).sum())
    assert dropped > 0
    with vcast.enabled(model, cfg) as handle:
        out = model(**inputs, use_cache=True)
        assert out.logits.shape[1] == length - dropped
        assert cache_of(out).get_seq_length() == length - dropped
        torch.testing.assert_close(out.logits[:, -1], first, atol=1e-5, rtol=0)
        gen = model.generate(**inputs, max_new_tokens=6, do_sample=False, return_dict_in_generate=True)
        assert torch.equal(gen.sequences[:, length:], tokens)
        assert cache_of(gen).get_seq_length() == length - dropped + 6 - 1
        stats = handle.stats
    assert stats["prefill_length_before"] == length and stats["prefill_length_after"] == length - dropped
    assert [v["frames"] for v in stats["videos"]] == [3, 2]  # temporal patches (6 and 4 frames)
    assert stats["video_tokens_before"] - stats["video_tokens_after"] == dropped
    assert stats["prompt_tokens_before"][0] - stats["prompt_tokens_after"][0] == dropped


def _capture_positions(model):
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda m, a, kw: seen.append((kw["position_ids"].clone(), kw["inputs_embeds"].shape[1])), with_kwargs=True)
    return seen, hook


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen2_5_vl"])
def test_kept_tokens_keep_their_mrope_ids_in_generate(model_type):
    model, processor = tiny(model_type)
    inputs = _prompt(processor, frames=(6,), image=False)
    seen, hook = _capture_positions(model)
    try:
        model.generate(**inputs, max_new_tokens=3, do_sample=False)
        full = [p for p, _ in seen]
        seen.clear()
        cfg = VCastConfig(retain_ratio=0.25)
        keep = _keep_columns(model, inputs, cfg)[0]
        with vcast.enabled(model, cfg):
            model.generate(**inputs, max_new_tokens=3, do_sample=False)
        pruned = [p for p, _ in seen]
    finally:
        hook.remove()
    assert full[0].shape[0] == 4  # generate passes [text; t; h; w]
    assert torch.equal(pruned[0][1:, 0], full[0][1:, 0][:, keep])  # (t, h, w) of every kept token
    kept = int(keep.sum())
    assert torch.equal(pruned[0][0, 0], torch.arange(kept))  # contiguous text row: no packed-sequence split
    for step_full, step_pruned in zip(full[1:], pruned[1:]):  # decode continues as after the full prompt
        assert torch.equal(step_pruned[1:], step_full[1:])
        assert int(step_pruned[0, 0, -1]) == int(step_full[0, 0, -1]) - int((~keep).sum())


@pytest.mark.parametrize("model_type", QWEN_TYPES)
def test_batch_rows_match_running_alone(model_type):
    model, processor = tiny(model_type)
    texts = ["Short?", "A much longer question about the clip?"]
    frames, sizes = (8, 3), [(64, 64), (48, 32)]
    cfg = VCastConfig(retain_ratio=0.3)
    batch = _prompt(processor, frames=frames, image=False, batch_texts=texts, sizes=sizes)
    assert (batch["attention_mask"] == 0).any()  # left padding
    with vcast.enabled(model, cfg) as handle:
        out = model(**batch).logits[:, -1]
        gen = model.generate(**batch, max_new_tokens=5, do_sample=False)[:, batch["input_ids"].shape[1]:]
        kept = [v["tokens_kept"] for v in handle.stats["videos"]]
        assert kept[0] != kept[1]
        for row in range(2):
            alone = vt.make_inputs(processor, texts[row], videos=[vt.random_video(frames[row], *sizes[row], seed=row)])
            torch.testing.assert_close(out[row], model(**alone).logits[0, -1], atol=1e-5, rtol=0)
            ref = model.generate(**alone, max_new_tokens=5, do_sample=False)[0, alone["input_ids"].shape[1]:]
            assert torch.equal(gen[row], ref)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_eager_and_sdpa(attn):
    model, processor = tiny("qwen3_vl", attn=attn)
    inputs = _prompt(processor, frames=(4,))
    cfg = VCastConfig(retain_ratio=0.4)
    first, tokens = _oracle(model, inputs, _keep_columns(model, inputs, cfg), steps=4)
    with vcast.enabled(model, cfg):
        torch.testing.assert_close(model(**inputs).logits[:, -1], first, atol=1e-5, rtol=0)
        gen = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(gen[:, inputs["input_ids"].shape[1]:], tokens)


def test_sampling_generate_and_cache_length():
    model, processor = tiny("qwen2_vl")
    inputs = _prompt(processor, frames=(6,), image=False)
    length = inputs["input_ids"].shape[1]
    with vcast.enabled(model, retain_ratio=0.25) as handle:
        torch.manual_seed(0)
        out = model.generate(**inputs, max_new_tokens=5, do_sample=True, top_k=20, return_dict_in_generate=True)
        after = handle.stats["prefill_length_after"]
    assert after < length
    assert out.sequences.shape[1] == length + 5
    assert cache_of(out).get_seq_length() == after + 4


# transformers' Qwen3-VL video processor refuses clips shorter than its temporal patch (2 frames), so the
# 1-frame case runs on Qwen2-VL, whose processor repeats the frame.
@pytest.mark.parametrize("model_type,frames,size", [
    ("qwen2_vl", 1, (64, 64)), ("qwen3_vl", 2, (64, 64)), ("qwen3_vl", 3, (64, 64)),
    ("qwen3_vl_moe", 5, (16, 16)), ("qwen2_5_vl", 4, (16, 48)), ("qwen2_5_vl", 7, (32, 32)),
])
def test_short_odd_and_tiny_videos(model_type, frames, size):
    model, processor = tiny(model_type)
    inputs = _prompt(processor, frames=(frames,), sizes=[size], image=False)
    with vcast.enabled(model, retain_ratio=0.25) as handle:
        out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
        video = handle.stats["videos"][0]
    assert out.shape[1] == inputs["input_ids"].shape[1] + 2
    assert video["frames"] == -(-frames // 2)
    assert sum(video["kept_per_frame"]) == video["tokens_kept"] >= 1


def test_long_clip():
    model, processor = tiny("qwen2_5_vl")
    inputs = _prompt(processor, frames=(256,), sizes=[(32, 32)], image=False)  # 128 temporal patches x 4 tokens
    with vcast.enabled(model, retain_ratio=0.1) as handle:
        out = model(**inputs, use_cache=True)
        stats = handle.stats
    # V-CAST keeps at least min_tokens_per_frame (1) per temporal patch: max(round(0.1 * 512), 128).
    assert stats["video_tokens_before"] == 512 and stats["video_tokens_after"] == 128
    assert cache_of(out).get_seq_length() == stats["prefill_length_after"]


def test_half_precision():
    model, processor = vt.tiny_model("qwen3_vl", dtype=torch.bfloat16)
    inputs = _prompt(processor, frames=(4,))
    with vcast.enabled(model, retain_ratio=0.25) as handle:
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3
    assert handle.stats["video_tokens_after"] < handle.stats["video_tokens_before"]


def test_text_only_and_image_only_prompts_are_untouched():
    model, processor = tiny("qwen3_vl")
    text = vt.make_inputs(processor, "Hello")
    image = vt.make_inputs(processor, "Hello", images=[vt.random_image(32, 32)])
    refs = [model(**x).logits for x in (text, image)]
    with vcast.enabled(model, retain_ratio=0.25) as handle:
        for x, ref in zip((text, image), refs):
            assert torch.equal(model(**x).logits, ref)
        assert handle.stats == {}


def test_unsupported_options_raise_config_error():
    model, _ = tiny("qwen2_vl")
    with pytest.raises(ConfigError, match="positions"):
        vcast.apply(model, retain_ratio=0.25, positions="compact")
    with pytest.raises(ConfigError, match="prune_at"):
        vcast.apply(tiny("qwen2_vl")[0], retain_ratio=0.25, prune_at="vision:1")
    assert not model.model._forward_pre_hooks


def test_inputs_embeds_with_video_raises():
    model, processor = tiny("qwen2_vl")
    inputs = dict(_prompt(processor, frames=(2,), image=False))
    embeds = model.get_input_embeddings()(inputs.pop("input_ids"))
    with vcast.enabled(model, retain_ratio=0.5), pytest.raises(InputError, match="input_ids"):
        model(inputs_embeds=embeds, **inputs)


def test_batch_without_padding_whose_rows_keep_different_counts():
    # Same prompt length, so generate() drops the all-ones mask; retain_ratio="auto" keeps more of
    # the moving clip, so the adapter must create the padding mask itself, at prefill and decode.
    model, processor = tiny("qwen2_5_vl")
    videos = [vt.random_video(8, seed=3, motion=0.0), vt.random_video(8, seed=4, motion=6.0)]
    batch = vt.make_inputs(processor, ["Q?", "Q?"], videos=videos)
    assert bool(batch["attention_mask"].all())
    cfg = VCastConfig(retain_ratio="auto", min_ratio=0.1, max_ratio=0.6)
    with vcast.enabled(model, cfg) as handle:
        gen = model.generate(**batch, max_new_tokens=4, do_sample=False)[:, batch["input_ids"].shape[1]:]
        kept = [v["tokens_kept"] for v in handle.stats["videos"]]
        assert kept[0] != kept[1]
        for row in range(2):
            alone = vt.make_inputs(processor, "Q?", videos=[videos[row]])
            ref = model.generate(**alone, max_new_tokens=4, do_sample=False)[0, alone["input_ids"].shape[1]:]
            assert torch.equal(gen[row], ref)


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen2_vl"])
def test_generate_without_cache_matches_with_cache(model_type):
    # Without a cache and an all-ones mask, transformers checks the text position row for packed
    # sequences: a gap left by pruning would split attention. The text row must stay contiguous.
    model, processor = tiny(model_type)
    inputs = _prompt(processor, frames=(6,), image=False)
    with vcast.enabled(model, retain_ratio=0.25):
        cached = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        uncached = model.generate(**inputs, max_new_tokens=4, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)


def test_static_cache_is_refused_clearly():
    model, processor = tiny("qwen2_vl")
    inputs = _prompt(processor, frames=(4,), image=False)
    with vcast.enabled(model, retain_ratio=0.3), pytest.raises(InputError, match="dynamic cache"):
        model.generate(**inputs, max_new_tokens=2, cache_implementation="static")
