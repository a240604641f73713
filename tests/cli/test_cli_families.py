"""`vcast generate`, `vcast viz` and `vcast demo --model-type` on every family of the tiny-model table."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import vcast.testing as vt
from vcast.cli import app
from vcast.errors import UnsupportedModelError
from vcast.video import write_video

runner = CliRunner()
# One row per processor / loading path (the MoE variants load like their dense siblings, Qwen2.5-Omni like
# Qwen3-Omni, MiniCPM-V 4.6 like 4.7): the whole Qwen-Omni model loads with its own class and answers through
# its thinker.
FAMILIES = ["qwen3_5", "glm4v", "glm46v", "gemma4", "llava_next_video", "internvl", "video_llama_3",
            "molmo2", "smolvlm", "minicpmv4_7", "qwen3_omni_moe"]


def _saved(tmp_path, model_type):
    try:
        model, processor = vt.tiny_model(model_type)
    except UnsupportedModelError as err:  # Gemma 4's processor before transformers 5.24 needs torchvision
        pytest.skip(str(err))
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    clip = write_video(tmp_path / "clip.mp4", vt.random_video(8, 64, 64, seed=3, motion=3.0), fps=4)
    return tmp_path / "tiny", clip


@pytest.mark.parametrize("model_type", FAMILIES)
def test_generate_and_viz_on_a_saved_tiny_model(tmp_path, model_type):
    model_dir, clip = _saved(tmp_path, model_type)
    result = runner.invoke(app, ["generate", "--model", str(model_dir), "--video", str(clip), "--prompt", "What?",
                                 "--num-frames", "4", "--max-new-tokens", "2", "--retain-ratio", "0.3", "--json", "-"])
    assert result.exit_code == 0, (result.output, result.exception)
    data = json.loads(result.stdout)
    assert data["new_tokens"] == 2
    assert data["video_tokens_after"] < data["video_tokens_before"]
    assert data["sequence_before"] - data["sequence_after"] == data["video_tokens_before"] - data["video_tokens_after"]
    out = tmp_path / "keep.png"
    result = runner.invoke(app, ["viz", "--model", str(model_dir), "--video", str(clip), "--num-frames", "4",
                                 "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert out.stat().st_size > 1000


@pytest.mark.parametrize("model_type", ["internvl", "smolvlm"])  # the families that need their processor
def test_demo_runs_on_other_tiny_families(tmp_path, model_type):
    with torch.no_grad():
        result = runner.invoke(app, ["demo", "--model-type", model_type, "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"tiny random-weight {model_type}" in result.output
    assert (tmp_path / "keep.png").exists()


def test_demo_refuses_an_unknown_model_type(tmp_path):
    result = runner.invoke(app, ["demo", "--model-type", "gpt2", "--out-dir", str(tmp_path)])
    assert result.exit_code != 0 and "--model-type must be one of" in str(result.exception)
