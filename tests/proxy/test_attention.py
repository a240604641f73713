"""The answer-attention probe equals eager attention's last row, on this instance only, and comes off."""

from __future__ import annotations

import torch

from vcast.proxy import tasks
from vcast.proxy.attention import AnswerAttention
from vcast.proxy.model import build_model, build_processor, encode


def test_probe_equals_eager_attention_of_the_last_position() -> None:
    model = build_model(seed=4).eval()
    clips = [tasks.make_clip("val", 1, i) for i in (0, 3, 5)]  # prompts of different lengths: left padding
    inputs = encode(build_processor(), clips)
    assert not inputs["attention_mask"].all()
    with torch.no_grad(), AnswerAttention(model, [0, 2]) as probe:
        sdpa_logits = model(**inputs).logits
        probs = probe.probs
    hooks = [h for layer in model.model.language_model.layers for h in layer.self_attn._forward_hooks.values()]
    assert not any("AnswerAttention" in getattr(h, "__qualname__", "") for h in hooks)
    model.config._attn_implementation = model.model.language_model.config._attn_implementation = "eager"
    with torch.no_grad():
        out = model(**inputs, output_attentions=True)
    assert torch.allclose(out.logits[:, -1], sdpa_logits[:, -1], atol=1e-5)  # the probe changed nothing
    for mine, ref in zip(probs, (out.attentions[0], out.attentions[2])):
        assert mine.shape == ref[:, :, -1].shape
        assert torch.allclose(mine, ref[:, :, -1], atol=1e-6)
        assert torch.allclose(mine.sum(-1), torch.ones(mine.shape[:2]))
        assert (mine[~inputs["attention_mask"].bool()[:, None].expand_as(mine)] == 0).all()  # padding gets none
