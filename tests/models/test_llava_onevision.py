"""The LLaVA-OneVision adapter on a tiny random model (SigLIP + Qwen2, 16 pooled tokens per frame).

The oracle: dropping tokens from a 1-D RoPE prompt equals masking them out of attention while every
other token keeps its position id. So the pruned model must match the *vanilla* model run with a
2-D attention mask with holes at the dropped video tokens and explicit position ids (the unpruned
ids for ``positions="original"``; each id minus the dropped tokens before it for ``"compact"``),
including greedy decoding with the KV cache.
"""

from __future__ import annotations

import pytest
import torch
from tiny_cache import cache_of, tiny, with_cache

import vcast
import vcast.testing as vt
from vcast.config import VCastConfig
from vcast.errors import ConfigError, InputError
from vcast.models.llava_onevision import LlavaOnevisionAdapter, VideoTokenLayout

TOKENS_PER_FRAME = 16  # 64 px frames, 8 px patches -> 8x8 -> pooled 4x4


def _prompt(processor, videos_per_row=(1,), texts=None, frames=4, image=False):
    """Chat inputs; row b holds ``videos_per_row[b]`` videos of ``frames`` frames (and an image if asked)."""
    texts = texts or ["What happens?"] * len(videos_per_row)
    prompts, videos, seed = [], [], 0
    for text, count in zip(texts, videos_per_row):
        content = [{"type": "image"}] * image + [{"type": "video"}] * count + [{"type": "text", "text": text}]
        prompts.append(processor.apply_chat_template([{"role": "user", "content": content}],
                                                     add_generation_prompt=True))
        for _ in range(count):
            videos.append(vt.random_video(frames, 48, 64, seed=seed))
            seed += 1
    extra = {"images": [vt.random_image(40, 100, seed=9)] * len(prompts)} if image else {}
    return processor(text=prompts, videos=videos, padding=True, return_tensors="pt", **extra)


def _keep_columns(model, inputs, config):
    """BoolTensor[B, L]: columns a pruned prefill keeps, computed without the adapter."""
    pooled = model.model.get_video_features(inputs["pixel_values_videos"], return_dict=True).pooler_output
    v, length, d = pooled.shape
    grid = pooled[:, :-1].reshape(v, (length - 1) // TOKENS_PER_FRAME, TOKENS_PER_FRAME, d)
    sels = vcast.get_method(config.method).run(list(grid), config)
    runs = [torch.cat([s.keep_mask().reshape(-1), torch.ones(1, dtype=torch.bool)]) for s in sels]  # + newline
    video = inputs["input_ids"] == model.config.video_token_id
    keep = ~video
    keep[video] = torch.cat(runs)
    return keep


def _positions(inputs, keep, mode):
    """Position ids generate() would use for the unpruned prompt, renumbered for ``mode``."""
    mask = inputs["attention_mask"]
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    return pos if mode == "original" else pos - (~keep).long().cumsum(-1)


def _oracle(model, inputs, keep, mode, steps):
    """Vanilla model, holes in the mask, explicit positions: (last logits, greedy tokens)."""
    pos = _positions(inputs, keep, mode)
    mask = inputs["attention_mask"] * keep.long()
    out = model(**{**inputs, "attention_mask": mask, "position_ids": pos}, use_cache=True)
    first = out.logits[:, -1]
    cache, token, last, tokens = cache_of(out), first.argmax(-1), pos[:, -1:], []
    for _ in range(steps):
        tokens.append(token)
        last = last + 1
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=last, **with_cache(cache))
        cache, token = cache_of(out), out.logits[:, -1].argmax(-1)
    return first, torch.stack(tokens, dim=1)


def test_tiny_model_and_processor():
    model, processor = tiny("llava_onevision")
    inputs = _prompt(processor, frames=3)
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) == 3 * TOKENS_PER_FRAME + 1
    assert processor.decode(processor.tokenizer("héllo <video>")["input_ids"]) == "héllo <video>"
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


@pytest.mark.parametrize("kind,length", [("one_token", 3 * 4 + 1), ("no_token", 12), ("frame", 15), ("grid", 18)])
def test_layout_detection(kind, length):
    layout = VideoTokenLayout.detect(length, frames=3, rows=2, cols=2)
    assert layout.kind == kind and layout.grid_index.numel() == 12
    assert bool((layout.grid_index.diff() > 0).all()) and int(layout.grid_index[-1]) < length
    newline = torch.ones(length, dtype=torch.bool)
    newline[layout.grid_index] = False
    expected = {"one_token": [12], "no_token": [], "frame": [4, 9, 14], "grid": [2, 5, 8, 11, 14, 17]}[kind]
    assert newline.nonzero().flatten().tolist() == expected
    with pytest.raises(InputError, match="newline layout"):
        VideoTokenLayout.detect(length + 100, frames=3, rows=2, cols=2)


@pytest.mark.parametrize("positions", ["original", "compact"])
def test_ratio_one_is_exact(positions):
    model, processor = tiny("llava_onevision")
    inputs = _prompt(processor, videos_per_row=(1, 2), texts=["Hi?", "A longer question here?"])
    ref = model(**inputs).logits
    greedy = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    torch.manual_seed(0)
    sampled = model.generate(**inputs, max_new_tokens=5, do_sample=True, top_k=20)
    with vcast.enabled(model, retain_ratio=1.0, positions=positions) as handle:
        torch.testing.assert_close(model(**inputs).logits, ref, atol=1e-5, rtol=0)
        assert torch.equal(model.generate(**inputs, max_new_tokens=5, do_sample=False), greedy)
        torch.manual_seed(0)
        assert torch.equal(model.generate(**inputs, max_new_tokens=5, do_sample=True, top_k=20), sampled)
        assert handle.stats["prefill_length_after"] == handle.stats["prefill_length_before"]


@pytest.mark.parametrize("positions", ["original", "compact"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_pruned_matches_masked_oracle(positions, attn):
    model, processor = tiny("llava_onevision", attn=attn)
    inputs = _prompt(processor, frames=5)
    cfg = VCastConfig(retain_ratio=0.3, positions=positions)
    keep = _keep_columns(model, inputs, cfg)
    assert bool(keep[0, inputs["input_ids"][0] == model.config.video_token_id][-1])  # the newline is kept
    first, tokens = _oracle(model, inputs, keep, positions, steps=6)
    length, dropped = inputs["input_ids"].shape[1], int((~keep).sum())
    assert dropped == 5 * TOKENS_PER_FRAME - round(5 * TOKENS_PER_FRAME * 0.3)
    with vcast.enabled(model, cfg) as handle:
        out = model(**inputs)
        assert out.logits.shape[1] == cache_of(out).get_seq_length() == length - dropped
        torch.testing.assert_close(out.logits[:, -1], first, atol=1e-5, rtol=0)
        gen = model.generate(**inputs, max_new_tokens=6, do_sample=False, return_dict_in_generate=True)
        assert torch.equal(gen.sequences[:, length:], tokens)
        assert cache_of(gen).get_seq_length() == length - dropped + 6 - 1
        stats = handle.stats
    assert stats["prefill_length_before"] - stats["prefill_length_after"] == dropped
    assert stats["videos"][0]["frames"] == 5 and stats["videos"][0]["tokens_per_frame"] == TOKENS_PER_FRAME


def _capture(model):
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda m, a, kw: seen.append((kw["position_ids"].clone(), kw.get("attention_mask"))), with_kwargs=True)
    return seen, hook


def test_position_ids_in_generate():
    model, processor = tiny("llava_onevision")
    inputs = _prompt(processor, frames=4)
    cfg = VCastConfig(retain_ratio=0.25)
    keep = _keep_columns(model, inputs, cfg)[0]
    seen, hook = _capture(model)
    try:
        for positions in ("original", "compact"):
            with vcast.enabled(model, cfg.replace(positions=positions)):
                model.generate(**inputs, max_new_tokens=3, do_sample=False)
    finally:
        hook.remove()
    length, dropped = keep.numel(), int((~keep).sum())
    (orig, orig_mask), (orig_step, _), _, (comp, _), (comp_step, _), _ = seen
    assert torch.equal(orig[0], torch.arange(length)[keep])  # kept tokens keep their ids, text continues
    assert orig_mask is not None  # a 2-D mask: the gaps are never read as packed sequences
    assert int(orig_step) == length  # decoding continues as after the unpruned prompt
    assert torch.equal(comp[0], torch.arange(length - dropped)) and int(comp_step) == length - dropped


@pytest.mark.parametrize("positions", ["original", "compact"])
def test_no_cache_forward_and_manual_decode_loop(positions):
    """use_cache=False with no mask (packed-sequence detection is live there) and a decode loop
    that passes neither mask nor positions both match the oracle."""
    model, processor = tiny("llava_onevision")
    inputs = _prompt(processor, frames=4)
    cfg = VCastConfig(retain_ratio=0.25, positions=positions)
    first, tokens = _oracle(model, inputs, _keep_columns(model, inputs, cfg), positions, steps=3)
    bare = {k: v for k, v in inputs.items() if k != "attention_mask"}
    with vcast.enabled(model, cfg):
        torch.testing.assert_close(model(**bare, use_cache=False).logits[:, -1], first, atol=1e-5, rtol=0)
        out = model(**bare)
        token, got = out.logits[:, -1].argmax(-1), []
        for _ in range(3):
            got.append(token)
            out = model(input_ids=token[:, None], **with_cache(cache_of(out)))
            token = out.logits[:, -1].argmax(-1)
    assert torch.equal(torch.stack(got, 1), tokens)


@pytest.mark.parametrize("positions", ["original", "compact"])
def test_batch_rows_match_running_alone(positions):
    model, processor = tiny("llava_onevision")
    texts, counts = ["Short?", "A much longer question about both clips?"], (1, 2)
    batch = _prompt(processor, videos_per_row=counts, texts=texts)
    assert (batch["attention_mask"] == 0).any()  # left padding
    with vcast.enabled(model, retain_ratio=0.3, positions=positions) as handle:
        out = model(**batch).logits[:, -1]
        gen = model.generate(**batch, max_new_tokens=5, do_sample=False)[:, batch["input_ids"].shape[1]:]
        dropped = [b - a for b, a in zip(handle.stats["prompt_tokens_before"], handle.stats["prompt_tokens_after"])]
        assert dropped[0] != dropped[1]  # rows keep different counts: re-padded
        alone = [_prompt(processor, (1,), texts[:1]), _prompt(processor, (2,), texts[1:])]
        alone[1]["pixel_values_videos"] = batch["pixel_values_videos"][1:]  # the same clips as in the batch
        for row, x in enumerate(alone):
            torch.testing.assert_close(out[row], model(**x).logits[0, -1], atol=1e-5, rtol=0)
            ref = model.generate(**x, max_new_tokens=5, do_sample=False)[0, x["input_ids"].shape[1]:]
            assert torch.equal(gen[row], ref)


def test_anyres_image_is_untouched():
    model, processor = tiny("llava_onevision")
    inputs = _prompt(processor, frames=3, image=True)
    image_cols = inputs["input_ids"][0] == model.config.image_token_id
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["inputs_embeds"].clone()), with_kwargs=True)
    try:
        model(**inputs)
        with vcast.enabled(model, retain_ratio=0.25):
            model(**inputs)
    finally:
        hook.remove()
    full, pruned = seen
    assert int(image_cols.sum()) > 2 * TOKENS_PER_FRAME * 4  # anyres: base + high-res tiles + newlines
    first_video = int((inputs["input_ids"][0] == model.config.video_token_id).nonzero()[0])
    assert not bool(image_cols[first_video:].any())  # the image run lies before the video ...
    torch.testing.assert_close(pruned[0, :first_video], full[0, :first_video], atol=0, rtol=0)  # ... unchanged


@pytest.mark.parametrize("method", vcast.list_methods())
def test_every_registered_method(method):
    model, processor = tiny("llava_onevision")
    inputs = _prompt(processor, frames=4)
    length = inputs["input_ids"].shape[1]
    with vcast.enabled(model, method=method, retain_ratio=0.5) as handle:
        out = model.generate(**inputs, max_new_tokens=2, do_sample=False, return_dict_in_generate=True)
        stats = handle.stats
    assert out.sequences.shape[1] == length + 2
    assert stats["method"] == method and stats["prefill_length_after"] < length
    assert cache_of(out).get_seq_length() == stats["prefill_length_after"] + 1


def test_merging_method_features_reach_the_llm():
    model, processor = tiny("llava_onevision")
    inputs = _prompt(processor, frames=3)
    cfg = vcast.make_config("pool", retain_ratio=0.25)
    pooled = model.model.get_video_features(inputs["pixel_values_videos"], return_dict=True).pooler_output
    (sel,) = vcast.get_method("pool").run([pooled[0, :-1].view(3, TOKENS_PER_FRAME, -1)], cfg)
    assert sel.merged_features is not None
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["inputs_embeds"]), with_kwargs=True)
    try:
        with vcast.enabled(model, cfg):
            model(**inputs)
    finally:
        hook.remove()
    first = int((inputs["input_ids"][0] == model.config.video_token_id).nonzero()[0])
    got = seen[0][0, first:first + sel.num_kept + 1]
    torch.testing.assert_close(got, torch.cat([sel.merged_features, pooled[0, -1:]]), atol=0, rtol=0)


class _GridNewlineModel(type(tiny("llava_onevision")[0].model)):
    """A LLaVA-Video style variant: a newline after every pooled row of every frame."""

    def get_video_features(self, pixel_values_videos, **kwargs):
        out = super().get_video_features(pixel_values_videos, **kwargs)
        v, t = pixel_values_videos.shape[:2]
        grid = out.pooler_output[:, :-1].reshape(v, t, 4, 4, -1)
        newline = self.image_newline.expand(v, t, 4, 1, -1)
        out.pooler_output = torch.cat([grid, newline], dim=3).reshape(v, t * 4 * 5, -1)
        return out


def test_per_row_newline_variant_keeps_the_frame_grid():
    model, processor = vt.tiny_model("llava_onevision")
    plain = model.model.get_video_features
    variant = _GridNewlineModel(model.config)
    variant.load_state_dict(model.model.state_dict())
    model.model = variant.eval()
    inputs = dict(_prompt(processor, frames=3))
    ids = inputs["input_ids"][0].tolist()
    at = ids.index(model.config.video_token_id)
    ids[at:at + 3 * TOKENS_PER_FRAME + 1] = [model.config.video_token_id] * (3 * 20)  # one run of T*h*(w+1)
    inputs["input_ids"] = torch.tensor([ids])
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    ref = model(**inputs).logits
    grid = plain(inputs["pixel_values_videos"], return_dict=True).pooler_output[0, :-1].view(3, 16, -1)
    with vcast.enabled(model, retain_ratio=1.0):
        torch.testing.assert_close(model(**inputs).logits, ref, atol=1e-5, rtol=0)
    handle = vcast.apply(model, retain_ratio=0.25)
    seen = []
    select = handle.adapter.select
    handle.adapter.select = lambda feats, grids=None: seen.append(feats) or select(feats, grids)
    out = model(**inputs)
    handle.remove()
    torch.testing.assert_close(seen[0][0], grid, atol=1e-6, rtol=0)  # newlines removed from the frame grid
    assert out.logits.shape[1] == len(ids) - (48 - 12)  # only grid tokens dropped, all 12 newlines kept


def test_errors_and_removal():
    model, processor = tiny("llava_onevision")
    inputs = dict(_prompt(processor, frames=2))
    with pytest.raises(ConfigError, match="prune_at"):
        vcast.apply(model, retain_ratio=0.25, prune_at="vision:1")
    assert not model.model._forward_pre_hooks
    assert vcast.models.resolve_adapter(model, VCastConfig()) is LlavaOnevisionAdapter
    ref = model(**inputs).logits
    with vcast.enabled(model, retain_ratio=0.5):
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        with pytest.raises(InputError, match="input_ids"):
            model(inputs_embeds=embeds, **{k: v for k, v in inputs.items() if k != "input_ids"})
        video = (inputs["input_ids"][0] == model.config.video_token_id).nonzero().flatten()
        short = torch.cat([inputs["input_ids"][:, :video[0]], inputs["input_ids"][:, video[3]:]], dim=1)
        with pytest.raises(InputError, match="video tokens"):  # a truncated video run
            model(**{**inputs, "input_ids": short, "attention_mask": None})
    assert not model.model._forward_pre_hooks and "get_video_features" not in vars(model.model)
    assert torch.equal(model(**inputs).logits, ref)


def test_video_processor_matches_transformers_with_torchvision():
    pytest.importorskip("torchvision")
    from transformers.models.llava_onevision.video_processing_llava_onevision import (
        LlavaOnevisionVideoProcessor,
    )

    from vcast.testing.llava import TorchLlavaOnevisionVideoProcessor

    clip = vt.random_video(3, 50, 70)
    ours = TorchLlavaOnevisionVideoProcessor(size={"height": 64, "width": 64})([clip], return_tensors="pt")
    real = LlavaOnevisionVideoProcessor(size={"height": 64, "width": 64})([clip], return_tensors="pt")
    torch.testing.assert_close(ours["pixel_values_videos"], real["pixel_values_videos"])


def test_saved_model_and_processor_round_trip(tmp_path):
    from transformers import AutoModelForImageTextToText

    from vcast.testing.llava import load_llava_onevision_processor

    model, processor = tiny("llava_onevision")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path, local_files_only=True).eval()
    loaded_processor = load_llava_onevision_processor(str(tmp_path), local_files_only=True)
    inputs, again = _prompt(processor, frames=3), _prompt(loaded_processor, frames=3)
    assert all(torch.equal(inputs[k], again[k]) for k in inputs)
    with vcast.enabled(loaded, retain_ratio=0.25), vcast.enabled(model, retain_ratio=0.25):
        torch.testing.assert_close(loaded(**again).logits, model(**inputs).logits, atol=1e-6, rtol=0)


def test_half_precision():
    model, processor = vt.tiny_model("llava_onevision", dtype=torch.bfloat16)
    inputs = _prompt(processor, frames=4)
    with vcast.enabled(model, retain_ratio=0.25) as handle:
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3
    assert handle.stats["video_tokens_after"] == round(4 * TOKENS_PER_FRAME * 0.25)
