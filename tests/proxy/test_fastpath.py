"""The training speed-ups equal transformers' own modules and stay on the one instance they were set on."""

from __future__ import annotations

import torch

from vcast.proxy import tasks
from vcast.proxy.fastpath import PatchMatmul, chunk_vision_attention, swap_patch_conv
from vcast.proxy.model import build_model, build_processor, encode


def test_patch_matmul_equals_conv3d() -> None:
    model = build_model(seed=1)
    x = torch.randn(40, 3 * 2 * 16 * 16)
    ref = model.model.visual.patch_embed(x)
    swap_patch_conv(model, PatchMatmul)
    assert type(model.model.visual.patch_embed.proj) is PatchMatmul
    assert torch.allclose(model.model.visual.patch_embed(x), ref, atol=1e-5)
    swap_patch_conv(model, torch.nn.Conv3d)
    assert type(model.model.visual.patch_embed.proj) is torch.nn.Conv3d
    assert torch.equal(model.model.visual.patch_embed(x), ref)


def test_batched_vision_attention_equals_the_per_chunk_loop_and_is_removed() -> None:
    model = build_model(seed=3).eval()
    clips = [tasks.make_clip("val", 0, i) for i in (0, 3, 5)]  # 16-frame clips: 8 chunks of 64 patches each
    batch = encode(build_processor(), clips)
    with torch.no_grad():
        ref = model.model.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"], return_dict=True)
        chunk_vision_attention(model, True)
        assert all("forward" in block.attn.__dict__ for block in model.model.visual.blocks)
        fast = model.model.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"],
                                              return_dict=True)
        chunk_vision_attention(model, False)
        assert not any("forward" in block.attn.__dict__ for block in model.model.visual.blocks)
        again = model.model.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"],
                                               return_dict=True)
    for a, b, c in zip(ref.pooler_output, fast.pooler_output, again.pooler_output):
        assert torch.equal(a, b) and torch.equal(a, c)
    deep_ref, deep_fast = _flat(ref.deepstack_features), _flat(fast.deepstack_features)
    assert deep_ref and len(deep_ref) == len(deep_fast)
    assert all(torch.equal(a, b) for a, b in zip(deep_ref, deep_fast))
    other = build_model(seed=3)
    assert not any("forward" in block.attn.__dict__ for block in other.model.visual.blocks)  # this instance only


def _flat(features) -> list:
    """Every tensor in a (possibly nested) tuple of feature tensors, in order."""
    if isinstance(features, torch.Tensor):
        return [features]
    return [t for item in features for t in _flat(item)]
