"""The guarantees every family adapter keeps, on a tiny random model of each (one row of :data:`CASES`).

The oracle for attention-only LLMs: dropping a token from the prompt equals masking it out of
attention while every other token keeps its position id, so the pruned model must match the *vanilla*
model run with the unpruned position ids and a 2-D attention mask with holes at the dropped video
tokens, greedy decoding with the KV cache included. A hybrid LLM (Qwen3.5's linear-attention layers
keep a convolution and a recurrent state, for which a masked token is still a step) is checked against
its vanilla language model run on the kept embeddings alone, with their original position ids.

The columns the oracle drops are computed here, without the adapter: the family's encoder output (called
as ``generate()`` calls it), cut into ``T x N`` per video by this table's geometry, goes through the
configured method, and the selections are laid onto the video placeholders in prompt order.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace

import pytest
import torch
from tiny_cache import tiny

import vcast
import vcast.testing as vt
from vcast.config import VCastConfig
from vcast.errors import InputError
from vcast.methods.grid import takes_grid


@dataclass(frozen=True)
class Case:
    """One family on its tiny model.

    Attributes:
        model_type: the tiny model (``vcast.testing.tiny_model``).
        step: frames per time step (the temporal patch: 2 for Qwen-style encoders).
        tokens: LLM tokens per time step at 64x64 frames.
        frames: frame counts of the two videos of the test prompt.
        image: also put an image in the prompt (GLM: transformers itself refuses image + video).
        hybrid: the LLM has linear-attention layers (sliced-embeddings oracle).
        extra: processor call options.
        sliced: a frame is several runs (MiniCPM-V's overview and slices): methods that need one grid
            raise on it, and run on the same prompt built with ``slice_mode=False``.
    """

    model_type: str
    step: int = 1
    tokens: int = 16
    frames: tuple[int, ...] = (6, 4)
    image: bool = True
    hybrid: bool = False
    extra: dict = field(default_factory=dict)
    needs_processor: bool = False
    sliced: bool = False


CASES = [
    Case("qwen3_5", step=2, hybrid=True),
    Case("qwen3_5_moe", step=2, hybrid=True),
    Case("glm4v", step=2, image=False),
    Case("glm4v_moe", step=2, image=False),
    Case("glm46v", step=2, image=False),
    Case("gemma4", tokens=64, frames=(3, 2)),
    Case("llava_next_video", frames=(4, 4)),
    Case("video_llama_3", extra={"use_token_compression": False}),
    Case("internvl", frames=(4, 4), image=False, needs_processor=True),  # its video processor stacks videos
    Case("molmo2", frames=(6,), image=False),  # one video per prompt, no image next to it (transformers' Molmo2)
    Case("smolvlm", image=False, needs_processor=True),  # frames are image blocks; images and videos not together
    # A frame: a 3x3 overview and two 2x4 slices; transformers 5.20's video processor needs equal frame counts.
    Case("minicpmv4_6", tokens=25, frames=(4, 4), hybrid=True, sliced=True),
    Case("minicpmv4_7", tokens=25, frames=(4, 4), hybrid=True, sliced=True),
    Case("qwen2_5_omni_thinker", step=2),
    Case("qwen3_omni_moe_thinker", step=2),
]
IDS = [c.model_type for c in CASES]
IMAGE_FRAMES = ("internvl", "smolvlm")  # frames written as image blocks


def _model(case: Case, attn: str = "sdpa"):
    return tiny(case.model_type, attn=attn)


def _apply_kw(case: Case, processor) -> dict:
    return {"processor": processor} if case.needs_processor else {}


def _prompt(case: Case, processor, texts="What happens in the clips?", image=None):
    videos = [vt.random_video(t, seed=i) for i, t in enumerate(case.frames)]
    rows = 1 if isinstance(texts, str) else len(texts)
    images = [vt.random_image(32, 48, seed=7)] * rows if (case.image if image is None else image) else None
    return vt.make_inputs(processor, texts, videos=videos * rows if rows > 1 else videos, images=images, **case.extra)


def _video_columns(model, inputs) -> torch.Tensor:
    cfg = model.config
    if cfg.model_type.startswith("glm"):
        return inputs["mm_token_type_ids"] == 2
    token = getattr(cfg, "video_token_id", None) if cfg.model_type not in IMAGE_FRAMES else cfg.image_token_id
    return inputs["input_ids"] == token


def _inner(model):
    """The multimodal module (``model.model``; transformers 5.20's Qwen2.5-Omni thinker holds it itself)."""
    return model.model if hasattr(model.model, "get_image_features") else model


def _llm(model):
    """The language model the multimodal module feeds."""
    inner = model.model
    return getattr(inner, "language_model", None) or getattr(inner, "text_model", inner)  # SmolVLM: text_model


def _encoder_tokens(model, inputs) -> list[torch.Tensor]:
    """Per video ``[L, D]``: the vanilla encoder output, called with the kwargs its signature names."""
    inner = _inner(model)
    frames_are_images = model.config.model_type in IMAGE_FRAMES  # this table's prompts hold no other image then
    fn = inner.get_image_features if frames_are_images else inner.get_video_features
    args = {k: inputs[k] for k in inspect.signature(fn).parameters if k in inputs}
    pooled = fn(**args, return_dict=True).pooler_output
    if frames_are_images and isinstance(pooled, torch.Tensor):  # InternVL: one [tiles, n, D] for every frame
        return [pooled.reshape(-1, pooled.shape[-1])]
    pooled = list(pooled) if isinstance(pooled, torch.Tensor) and pooled.ndim == 3 else list(pooled)
    return [p.reshape(-1, p.shape[-1]) for p in pooled]


def _keep_columns(case: Case, model, inputs, config) -> torch.Tensor:
    """BoolTensor[B, L]: the columns a pruned prefill keeps, computed without the adapter."""
    tokens = _encoder_tokens(model, inputs)
    times = [-(-t // case.step) for t in case.frames] * (inputs["input_ids"].shape[0])
    if len(tokens) != len(times):  # one flat tensor for all videos (InternVL), one per frame unit (MiniCPM-V)
        tokens = list(torch.cat(tokens).split([t * case.tokens for t in times]))
    features = [f.reshape(t, case.tokens, -1) for f, t in zip(tokens, times)]
    sels = vcast.get_method(config.method).run(features, config)
    video = _video_columns(model, inputs)
    keep = ~video
    keep[video] = torch.cat([s.keep_mask().reshape(-1) for s in sels])
    return keep


def _capture(module):
    seen = []
    hook = module.register_forward_pre_hook(lambda m, a, kw: seen.append(dict(kw)), with_kwargs=True)
    return seen, hook


def _vanilla_positions(model, inputs):
    """The position ids the vanilla model gives its LLM for this prompt (None: the LLM's own arange)."""
    seen, hook = _capture(_llm(model))
    try:
        model(**inputs)
    finally:
        hook.remove()
    return seen[0].get("position_ids"), seen[0]


def _masked_oracle(model, inputs, keep, steps):
    """Vanilla model, holes in the attention mask, explicit unpruned positions: (last logits, greedy tokens)."""
    pos, _ = _vanilla_positions(model, inputs)
    if pos is None:
        pos = torch.arange(inputs["input_ids"].shape[1])[None].expand(inputs["input_ids"].shape[0], -1)
    mask = inputs["attention_mask"] * keep.long()
    out = model(**{**inputs, "attention_mask": mask, "position_ids": pos}, use_cache=True)
    return _continue(model, out, mask, pos, steps)


def _continue(model, out, mask, pos, steps):
    first = out.logits[:, -1]
    cache, token, last, tokens = out.past_key_values, first.argmax(-1), pos[..., -1:], []
    for _ in range(steps):
        tokens.append(token)
        last = last + 1
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=last, past_key_values=cache,
                    use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1)
    return first, torch.stack(tokens, dim=1)


def _sliced_oracle(model, inputs, keep, steps):
    """Hybrid LLMs: the vanilla language model on the kept embeddings alone, original positions."""
    assert inputs["input_ids"].shape[0] == 1
    pos, seen = _vanilla_positions(model, inputs)
    if pos is None:  # a 1-D LLM numbering the prompt itself (MiniCPM-V 4.6)
        pos = torch.arange(inputs["input_ids"].shape[1])[None]
    cols = keep[0]
    lm, head = model.model.language_model, model.lm_head
    out = lm(inputs_embeds=seen["inputs_embeds"][:, cols], position_ids=pos[..., cols], use_cache=True)
    first = head(out.last_hidden_state)[:, -1]
    cache, token, last, tokens = out.past_key_values, first.argmax(-1), pos[..., cols][..., -1:], []
    for _ in range(steps):
        tokens.append(token)
        last = last + 1
        out = lm(inputs_embeds=model.get_input_embeddings()(token[:, None]), position_ids=last, past_key_values=cache,
                 use_cache=True)
        cache, token = out.past_key_values, head(out.last_hidden_state)[:, -1].argmax(-1)
    return first, torch.stack(tokens, dim=1)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_ratio_one_is_exact(case):
    model, processor = _model(case)
    inputs = _prompt(case, processor)
    ref = model(**inputs).logits
    ref_gen = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    with vcast.enabled(model, retain_ratio=1.0, **_apply_kw(case, processor)) as handle:
        torch.testing.assert_close(model(**inputs).logits, ref, atol=1e-5, rtol=0)
        assert torch.equal(model.generate(**inputs, max_new_tokens=4, do_sample=False), ref_gen)
        assert handle.stats["prefill_length_after"] == handle.stats["prefill_length_before"]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_pruned_matches_the_oracle(case, attn):
    model, processor = _model(case, attn)
    inputs = _prompt(case, processor)
    cfg = VCastConfig(retain_ratio=0.3)
    keep = _keep_columns(case, model, inputs, cfg)
    length, dropped = inputs["input_ids"].shape[1], int((~keep).sum())
    assert dropped > 0
    oracle = _sliced_oracle if case.hybrid else _masked_oracle
    first, tokens = oracle(model, inputs, keep, steps=5)
    with vcast.enabled(model, cfg, **_apply_kw(case, processor)) as handle:
        out = model(**inputs, use_cache=True)
        assert out.logits.shape[1] == length - dropped
        assert out.past_key_values.get_seq_length() == length - dropped
        torch.testing.assert_close(out.logits[:, -1], first, atol=1e-5, rtol=0)
        gen = model.generate(**inputs, max_new_tokens=5, do_sample=False, return_dict_in_generate=True)
        assert torch.equal(gen.sequences[:, length:], tokens)
        stats = handle.stats
    assert [v["frames"] for v in stats["videos"]] == [-(-t // case.step) for t in case.frames]
    assert {v["tokens_per_frame"] for v in stats["videos"]} == {case.tokens}
    assert stats["video_tokens_before"] - stats["video_tokens_after"] == dropped
    assert stats["prefill_length_after"] == length - dropped


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_kept_tokens_keep_their_position_ids(case):
    model, processor = _model(case)
    inputs = _prompt(case, processor, image=False)
    cfg = VCastConfig(retain_ratio=0.25)
    keep = _keep_columns(case, model, inputs, cfg)[0]
    seen, hook = _capture(_llm(model))
    try:
        model.generate(**inputs, max_new_tokens=3, do_sample=False)
        full = [s["position_ids"] for s in seen]
        seen.clear()
        with vcast.enabled(model, cfg, **_apply_kw(case, processor)):
            model.generate(**inputs, max_new_tokens=3, do_sample=False)
        pruned = [s["position_ids"] for s in seen]
    finally:
        hook.remove()
    if full[0] is None:  # the LLM numbers the prompt itself: vcast passes the original ids with their gaps
        assert torch.equal(pruned[0][0], torch.arange(keep.numel())[keep])
        return
    spatial = slice(1, None) if full[0].ndim == 3 and full[0].shape[0] == 4 else slice(None)
    assert torch.equal(pruned[0][spatial][..., 0, :], full[0][spatial][..., 0, keep])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_text_and_image_prompts_are_untouched(case):
    model, processor = _model(case)
    prompts = [vt.make_inputs(processor, "Hello"), vt.make_inputs(processor, "Hello", images=[vt.random_image(32, 48)])]
    refs = [model(**x).logits for x in prompts]
    with vcast.enabled(model, retain_ratio=0.25, **_apply_kw(case, processor)) as handle:
        for x, ref in zip(prompts, refs):
            assert torch.equal(model(**x).logits, ref)
        assert handle.stats == {}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_method_runs_and_a_second_instance_stays_vanilla(case):
    model, processor = _model(case)
    other, _ = tiny(case.model_type, seed=1)
    inputs = _prompt(case, processor, image=False)
    ref = other(**inputs).logits
    length = inputs["input_ids"].shape[1]
    for method in vcast.list_methods():
        x, n = inputs, length
        with vcast.enabled(model, method=method, retain_ratio=0.3, **_apply_kw(case, processor)) as handle:
            if case.sliced and takes_grid(handle.config):
                with pytest.raises(InputError, match="needs one rectangular token grid per frame"):
                    model.generate(**x, max_new_tokens=2, do_sample=False)
                x = _prompt(replace(case, extra={**case.extra, "slice_mode": False}), processor, image=False)
                n = x["input_ids"].shape[1]
            out = model.generate(**x, max_new_tokens=2, do_sample=False)
            assert out.shape[1] == n + 2
            assert handle.stats["video_tokens_after"] < handle.stats["video_tokens_before"], method
    assert torch.equal(other(**inputs).logits, ref)
    assert not _inner(model)._forward_pre_hooks
