"""The training loop: deterministic (the logged command rebuilds the same bytes), and its fast patch
embedding and batched vision attention equal transformers' own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcast.errors import ConfigError
from vcast.proxy import tasks
from vcast.proxy.model import build_model, build_processor, encode
from vcast.proxy.train import (
    TRAIN_FAMILIES,
    TrainConfig,
    _chunk_vision_attention,
    _drop_selections,
    _PatchMatmul,
    _swap_patch_conv,
    train,
)


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


def test_batched_vision_attention_equals_the_per_chunk_loop_and_is_removed() -> None:
    model = build_model(seed=3).eval()
    processor = build_processor()
    clips = [tasks.make_clip("val", 0, i) for i in (0, 3, 5)]  # 16-frame clips: 8 chunks of 64 patches each
    batch = encode(processor, clips)
    with torch.no_grad():
        ref = model.model.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"], return_dict=True)
        _chunk_vision_attention(model, True)
        assert all("forward" in block.attn.__dict__ for block in model.model.visual.blocks)
        fast = model.model.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"],
                                              return_dict=True)
        _chunk_vision_attention(model, False)
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


def test_training_covers_every_family_with_one_forward_per_clip_length() -> None:
    assert set(TRAIN_FAMILIES) == set(tasks.FAMILIES)
    _, log = train(TrainConfig(seed=1, steps=1, batch_size=len(TRAIN_FAMILIES), warmup=1))
    (entry,) = log["family_losses"]
    assert entry["step"] == 1 and set(entry) - {"step"} == set(tasks.FAMILIES)
    assert all(np.isfinite(v) for v in entry.values())


def test_the_logged_command_rebuilds_the_same_weights_in_a_fresh_process(tmp_path) -> None:
    import json
    import shlex
    import subprocess
    import sys

    from typer.testing import CliRunner

    from vcast.cli import app

    threads = torch.get_num_threads()
    try:
        args = ["proxy", "train", "--seed", "3", "--steps", "2", "--batch-size", "10", "--threads", "1",
                "--val-size", "0", "--out", str(tmp_path / "here")]
        result = CliRunner().invoke(app, args)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    log = json.loads((tmp_path / "here" / "train_log.json").read_text())
    command = shlex.split(log["command"])
    assert command[:3] == ["vcast", "proxy", "train"] and log["torch"] == torch.__version__
    command[command.index("--out") + 1] = str(tmp_path / "there")
    code = "import sys; from vcast.cli import app; app(sys.argv[1:])"
    subprocess.run([sys.executable, "-c", code, *command[1:]], check=True, capture_output=True)
    here = (tmp_path / "here" / "model.safetensors").read_bytes()
    assert (tmp_path / "there" / "model.safetensors").read_bytes() == here
    again = json.loads((tmp_path / "there" / "train_log.json").read_text())
    assert again["sha256"] == log["sha256"] and len(log["sha256"]) == 64


def _flat(features) -> list:
    """Every tensor in a (possibly nested) tuple of feature tensors, in order."""
    if isinstance(features, torch.Tensor):
        return [features]
    return [t for item in features for t in _flat(item)]
