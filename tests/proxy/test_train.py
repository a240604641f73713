"""The training loop: deterministic (the logged command rebuilds the same bytes), its two stages and
curricula, the thinned forward's bookkeeping and the evidence loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from vcast.core.selection import Selection
from vcast.errors import ConfigError
from vcast.proxy import tasks
from vcast.proxy.batching import EVIDENCE, FastEncoder
from vcast.proxy.model import build_model, build_processor
from vcast.proxy.train import (
    TRAIN_FAMILIES,
    TrainConfig,
    _evidence_loss,
    _forward,
    _lr_scale,
    keep_ratios,
    make_step,
    train,
)


def test_training_is_deterministic_and_returns_a_plain_model() -> None:
    cfg = TrainConfig(seed=5, vision_steps=2, steps=3, batch_size=3, warmup=1, thin_until=0.5, evidence_weight=1.0,
                      object_weight=5.0, drop_steps=0.5)
    m1, log1 = train(cfg)
    m2, log2 = train(cfg)
    assert log1["losses"] == log2["losses"] and len(log1["losses"]) == 3  # answer losses: stage 2 only
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert type(m1.model.visual.patch_embed.proj) is torch.nn.Conv3d and not m1.training
    assert not any("forward" in block.attn.__dict__ for block in m1.model.visual.blocks)
    hooks = [h for layer in m1.model.language_model.layers for h in layer.self_attn._forward_hooks.values()]
    assert not any("AnswerAttention" in getattr(h, "__qualname__", "") for h in hooks)  # the probe came off
    assert not hasattr(m1, "_vcast_handle")  # the thinning handle is gone: a plain model is returned
    assert not torch.equal(build_model(seed=5).lm_head.weight, m1.lm_head.weight)
    assert {"what", "what_recall", "evidence", "first"} <= set(log1["aux_losses"][-1])


def test_the_vision_stage_trains_the_vision_tower_alone() -> None:
    model, log = train(TrainConfig(seed=2, vision_steps=2, steps=0, batch_size=4, warmup=1))
    fresh = build_model(seed=2)
    mine, ref = dict(model.named_parameters()), dict(fresh.named_parameters())
    assert log["losses"] == [] and log["family_losses"] == []
    assert all(torch.equal(p, ref[n]) for n, p in mine.items() if not n.startswith("model.visual."))
    assert not torch.equal(mine["model.visual.patch_embed.proj.weight"], ref["model.visual.patch_embed.proj.weight"])


def test_each_stage_warms_up_and_decays_on_its_own() -> None:
    cfg = TrainConfig(vision_steps=100, steps=300, warmup=10, min_lr_ratio=0.1)
    assert _lr_scale(0, cfg) == pytest.approx(0.1) and _lr_scale(9, cfg) == pytest.approx(1.0)
    assert _lr_scale(99, cfg) == pytest.approx(0.1, abs=1e-3)  # end of stage 1
    assert _lr_scale(100, cfg) == pytest.approx(0.1) and _lr_scale(109, cfg) == pytest.approx(1.0)  # restart
    assert _lr_scale(399, cfg) == pytest.approx(0.1, abs=1e-4)


def test_keep_ratios_follow_the_token_curriculum() -> None:
    cfg = TrainConfig(vision_steps=10, steps=100, thin_until=0.5, thin_start=0.1)
    rng = np.random.default_rng(0)
    assert keep_ratios(5, cfg, rng, 4) is None  # stage 1: no LLM, nothing to thin
    first = keep_ratios(10, cfg, rng, 4)
    assert np.allclose(first, 0.1)
    mid = keep_ratios(35, cfg, rng, 1000)
    assert mid.min() >= 0.1 and mid.max() <= 0.1 + 0.9 * 25 / 50 + 1e-9
    assert keep_ratios(60, cfg, rng, 4) is None  # curriculum over, drop_steps = 0
    always = TrainConfig(vision_steps=0, steps=10, drop_steps=1.0, drop_min_ratio=0.3)
    r = keep_ratios(3, always, rng, 500)
    assert r.min() >= 0.3 and r.max() <= 1.0


def test_thinned_forward_lines_targets_up_with_the_tokens_that_reached_the_llm() -> None:
    cfg = TrainConfig(seed=0, vision_steps=0, steps=10, batch_size=10, thin_until=1.0, thin_start=0.25)
    model = build_model(seed=0).eval()
    parts, _, _ = make_step(cfg, FastEncoder(build_processor()), 9)
    with torch.no_grad():
        for inputs, targets, selections in parts:
            assert selections is not None
            logits, pooled, first_layer, kept_targets, reached = _forward(model, inputs, targets, selections)
            kept = torch.cat([s.keep_mask().reshape(-1) for s in selections])
            assert pooled.shape[0] == targets.shape[0] and first_layer.shape[0] == int(kept.sum())
            assert torch.equal(kept_targets, targets[kept])
            assert reached.sum(1).tolist() == [s.num_kept for s in selections]
            # evidence (objects first) is never thinned away
            assert kept_targets[:, EVIDENCE].sum() == targets[:, EVIDENCE].sum() or kept.float().mean() < 1
            t, n = selections[0].num_frames, selections[0].tokens_per_frame
            full = [Selection(torch.arange(t * n), torch.full((t,), n), s.curvature, t, n) for s in selections]
            everything = _forward(model, inputs, targets, full)
            plain = _forward(model, inputs, targets, None)
            assert torch.allclose(everything[0], plain[0], atol=1e-5)  # keeping all = not thinned
            assert torch.equal(everything[4], plain[4])


def test_evidence_loss_is_the_log_mass_on_the_evidence() -> None:
    reached = torch.tensor([[False, True, True, True, False], [False, True, True, True, False]])
    targets = torch.zeros(6, 6, dtype=torch.long)
    targets[1, EVIDENCE] = 1  # clip 0: its second video token; clip 1: none
    on = torch.zeros(2, 4, 5)
    on[:, :, 2] = 1.0
    assert float(_evidence_loss([on], reached, targets, heads=4)) == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((2, 4, 5), 0.2)
    assert float(_evidence_loss([uniform, uniform], reached, targets, heads=2)) == pytest.approx(np.log(5))
    assert _evidence_loss([uniform], reached, torch.zeros(6, 6, dtype=torch.long), heads=2) is None


def test_bad_config_raises() -> None:
    for bad in (dict(steps=-1), dict(steps=0, vision_steps=0), dict(seed=-1), dict(drop_steps=1.5),
                dict(drop_min_ratio=0.0), dict(thin_until=2.0), dict(thin_start=0.0), dict(object_weight=0.0),
                dict(vision_steps=-2), dict(evidence_weight=-1.0), dict(evidence_layers=(-1,)), dict(warmup=0), dict(evidence_heads=0)):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)
    with pytest.raises(ConfigError):
        train(TrainConfig(steps=1, evidence_weight=1.0, evidence_layers=(7,)))


def test_training_covers_every_family_with_one_forward_per_clip_length() -> None:
    assert set(TRAIN_FAMILIES) == set(tasks.FAMILIES)
    _, log = train(TrainConfig(seed=1, vision_steps=0, steps=1, batch_size=len(TRAIN_FAMILIES), warmup=1))
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
        args = ["proxy", "train", "--seed", "3", "--vision-steps", "1", "--steps", "2", "--batch-size", "10",
                "--threads", "1", "--val-size", "0", "--out", str(tmp_path / "here")]
        result = CliRunner().invoke(app, args)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    log = json.loads((tmp_path / "here" / "train_log.json").read_text())
    command = shlex.split(log["command"])
    assert command[:3] == ["vcast", "proxy", "train"] and log["torch"] == torch.__version__
    assert log["transformers"] == transformers.__version__
    command[command.index("--out") + 1] = str(tmp_path / "there")
    code = "import sys; from vcast.cli import app; app(sys.argv[1:])"
    subprocess.run([sys.executable, "-c", code, *command[1:]], check=True, capture_output=True)
    here = (tmp_path / "here" / "model.safetensors").read_bytes()
    assert (tmp_path / "there" / "model.safetensors").read_bytes() == here
    again = json.loads((tmp_path / "there" / "train_log.json").read_text())
    assert again["sha256"] == log["sha256"] and len(log["sha256"]) == 64
