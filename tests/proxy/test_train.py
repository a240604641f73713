"""The training loop: deterministic, and its fast patch embedding equals the real Conv3d."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcast.errors import ConfigError
from vcast.proxy.model import build_model
from vcast.proxy.train import TrainConfig, _drop_selections, _PatchMatmul, _swap_patch_conv, train


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
    cfg = TrainConfig(seed=5, steps=3, batch_size=3, warmup=1, drop_steps=0.5)
    m1, log1 = train(cfg)
    m2, log2 = train(cfg)
    assert log1["losses"] == log2["losses"]
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert type(m1.model.visual.patch_embed.proj) is torch.nn.Conv3d and not m1.training
    fresh = build_model(seed=5)
    assert not torch.equal(fresh.lm_head.weight, m1.lm_head.weight)
    assert not hasattr(m1, "_vcast_handle")  # the token-dropout handle is gone: a plain model is returned


def test_token_dropout_training_runs_through_the_adapter() -> None:
    cfg = TrainConfig(seed=2, steps=2, batch_size=2, warmup=1, drop_steps=1.0, drop_min_ratio=0.1)
    model, log = train(cfg)
    assert len(log["losses"]) == 2 and all(np.isfinite(log["losses"]))
    assert not hasattr(model, "_vcast_handle")


def test_drop_selections_keep_objects_and_equal_budgets_per_patch() -> None:
    what = np.zeros((4, 8, 16), dtype=np.uint8)
    what[0, 3, [2, 9]] = 1
    what[2, 0, 15] = 5
    a = _drop_selections(np.random.default_rng(1), what, 0.1)
    b = _drop_selections(np.random.default_rng(1), what, 0.1)
    for sel, other, w in zip(a, b, what):
        assert torch.equal(sel.keep_index, other.keep_index)
        budget = sel.frame_budget
        assert (budget == budget[0]).all() and 1 <= int(budget[0]) <= 16
        assert int(budget.sum()) == sel.num_kept
        kept = sel.keep_mask().numpy()
        objects = (w > 0).sum(1)
        assert ((kept & (w > 0)).sum(1) == np.minimum(objects, budget.numpy())).all()  # objects first
        assert torch.equal(sel.keep_index, sel.keep_index.sort().values)


def test_bad_config_raises() -> None:
    with pytest.raises(ConfigError):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError):
        TrainConfig(seed=-1)
    with pytest.raises(ConfigError):
        TrainConfig(drop_steps=1.5)
    with pytest.raises(ConfigError):
        TrainConfig(drop_min_ratio=0.0)
