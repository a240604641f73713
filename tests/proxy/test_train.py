"""The training loop: deterministic, and its fast patch embedding equals the real Conv3d."""

from __future__ import annotations

import pytest
import torch

from vcast.errors import ConfigError
from vcast.proxy.model import build_model
from vcast.proxy.train import TrainConfig, _PatchMatmul, _swap_patch_conv, train


def test_patch_matmul_equals_conv3d() -> None:
    model = build_model(seed=1)
    x = torch.randn(40, 3 * 2 * 16 * 16)
    ref = model.model.visual.patch_embed(x)
    _swap_patch_conv(model, _PatchMatmul)
    assert type(model.model.visual.patch_embed.proj) is _PatchMatmul
    assert torch.allclose(model.model.visual.patch_embed(x), ref, atol=1e-5)
    _swap_patch_conv(model, torch.nn.Conv3d)
    assert type(model.model.visual.patch_embed.proj) is torch.nn.Conv3d
    assert torch.equal(model.model.visual.patch_embed(x), ref)


def test_training_is_deterministic_and_learns_something() -> None:
    cfg = TrainConfig(seed=5, steps=3, batch_size=3, warmup=1)
    m1, log1 = train(cfg)
    m2, log2 = train(cfg)
    assert log1["losses"] == log2["losses"]
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert type(m1.model.visual.patch_embed.proj) is torch.nn.Conv3d and not m1.training
    fresh = build_model(seed=5)
    assert not torch.equal(fresh.lm_head.weight, m1.lm_head.weight)


def test_bad_config_raises() -> None:
    with pytest.raises(ConfigError):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError):
        TrainConfig(seed=-1)
