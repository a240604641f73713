"""`vcast generate`, `vcast viz` and `vcast demo` on a tiny Qwen3-VL saved to disk, and broken videos."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vcast.cli import app
from vcast.errors import InputError, VideoDecodeError
from vcast.testing import random_video, tiny_model
from vcast.video import load_video, write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model dir, clip path, in-memory model, processor): a tiny Qwen3-VL saved with save_pretrained."""
    root = tmp_path_factory.mktemp("cli")
    model, processor = tiny_model("qwen3_vl")
    model.save_pretrained(root / "tiny")
    processor.save_pretrained(root / "tiny")
    clip = write_video(root / "clip.mp4", random_video(10, 64, 96, seed=3, motion=3.0), fps=5)
    return root / "tiny", clip, model, processor


def _generate(args: list[str]):
    result = runner.invoke(app, ["generate", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def _direct_answer(model, processor, clip, retain_ratio: float | None, frames: int = 6) -> str:
    """What the library gives without the CLI: load_video -> processor -> (vcast.apply) -> generate."""
    from vcast.api import apply
    from vcast.cli.model import build_inputs

    video, meta = load_video(clip, num_frames=frames)
    inputs = build_inputs(processor, "What happens?", video, meta)
    handle = apply(model, retain_ratio=retain_ratio) if retain_ratio is not None else None
    try:
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    finally:
        if handle is not None:
            handle.remove()
    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_generate_json_matches_the_library_pipeline(saved) -> None:
    model_dir, clip, model, processor = saved
    result = _generate(["--model", str(model_dir), "--video", str(clip), "--prompt", "What happens?",
                        "--num-frames", "6", "--max-new-tokens", "4", "--retain-ratio", "0.3", "--json", "-"])
    data = json.loads(result.stdout)
    (video,) = data["videos"]
    assert video["frames"] == 3 and video["tokens_per_frame"] == 24  # 6 frames -> 3 temporal patches of 4x6
    assert sum(video["kept_per_frame"]) == video["tokens_kept"] == data["video_tokens_after"] == round(72 * 0.3)
    assert data["sequence_before"] - data["sequence_after"] == video["tokens_before"] - video["tokens_kept"]
    assert data["frames_indices"] == load_video(clip, num_frames=6)[1].frames_indices
    assert 0 < data["prefill_s"] <= data["generate_s"] and data["new_tokens"] == 4
    assert data["answer"] == _direct_answer(model, processor, clip, 0.3)


def test_generate_at_ratio_one_is_the_vanilla_answer(saved) -> None:
    model_dir, clip, model, processor = saved
    result = _generate(["--model", str(model_dir), "--video", str(clip), "--prompt", "What happens?",
                        "--num-frames", "6", "--max-new-tokens", "4", "--retain-ratio", "1.0", "--json", "-"])
    data = json.loads(result.stdout)
    assert data["sequence_before"] == data["sequence_after"]
    assert data["answer"] == _direct_answer(model, processor, clip, None)


@pytest.mark.parametrize("shape", [(1, 64, 64), (2, 64, 64), (3, 64, 64), (5, 16, 16), (256, 32, 48)])
def test_generate_short_odd_tiny_and_long_videos(saved, tmp_path, shape) -> None:
    model_dir, _, _, _ = saved
    t, h, w = shape
    clip = write_video(tmp_path / "v.mp4", random_video(t, h, w, seed=t), fps=8)
    data = json.loads(_generate(["--model", str(model_dir), "--video", str(clip), "--prompt", "x",
                                 "--num-frames", "256", "--max-new-tokens", "2", "--json", "-"]).stdout)
    (video,) = data["videos"]
    assert video["frames"] == -(-t // 2)  # temporal patches of 2 frames; 1 frame is padded to one patch
    assert video["tokens_per_frame"] == max(1, (h // 16) * (w // 16))
    assert sum(video["kept_per_frame"]) == video["tokens_kept"] >= video["frames"]  # every step keeps a token
    assert data["sequence_before"] - data["sequence_after"] == video["tokens_before"] - video["tokens_kept"]


def test_generate_tables(saved) -> None:
    model_dir, clip, _, _ = saved
    result = _generate(["--model", str(model_dir), "--video", str(clip), "--prompt", "Hi", "--num-frames", "4",
                        "--max-new-tokens", "2", "--method", "vcast"])
    for text in ("answer:", "tokens before", "kept per time step: [", "tokens into the LLM", "ms to the first token"):
        assert text in result.stdout


def test_generate_bad_model_paths(saved, tmp_path) -> None:
    _, clip, _, _ = saved
    (tmp_path / "empty_dir").mkdir()
    for model, message in ((clip, "is a file"), (tmp_path / "empty_dir", "cannot load model"),
                           ("/missing/model", "no such directory"), ("./missing", "no such directory")):
        result = runner.invoke(app, ["generate", "--model", str(model), "--video", str(clip), "--prompt", "x"])
        assert isinstance(result.exception, InputError) and message in str(result.exception), result.exception


def test_a_model_directory_that_is_not_a_video_llm_is_refused_before_loading(saved, tmp_path) -> None:
    from transformers import Qwen2Config

    from vcast.errors import UnsupportedModelError

    _, clip, _, _ = saved
    Qwen2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, vocab_size=50).save_pretrained(tmp_path)
    result = runner.invoke(app, ["generate", "--model", str(tmp_path), "--video", str(clip), "--prompt", "x"])
    assert isinstance(result.exception, UnsupportedModelError)
    assert "'qwen2' model" in str(result.exception) and "qwen3_vl" in str(result.exception)


def test_a_device_this_torch_cannot_use_is_a_vcast_error(saved, monkeypatch) -> None:
    import torch

    model_dir, clip, _, _ = saved
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device, message in (("cuda", "cuda"), ("cuda:3", "cuda"), ("gpu0", "not a torch device")):
        result = runner.invoke(app, ["generate", "--model", str(model_dir), "--video", str(clip), "--prompt", "x",
                                     "--device", device])
        assert isinstance(result.exception, InputError) and message in str(result.exception), result.exception
    if not torch.backends.cuda.is_built():  # this CPU-only torch: the message says so
        result = runner.invoke(app, ["generate", "--model", str(model_dir), "--video", str(clip), "--prompt", "x",
                                     "--device", "cuda"])
        assert "CPU-only build" in str(result.exception)


def test_generate_warns_when_asked_for_more_frames_than_the_file_has(saved) -> None:
    model_dir, clip, _, _ = saved  # a 10-frame clip
    with pytest.warns(UserWarning, match="asked for 1000 frames but video .* has 10"):
        _generate(["--model", str(model_dir), "--video", str(clip), "--prompt", "x", "--num-frames", "1000",
                   "--max-new-tokens", "1", "--json", "-"])


def test_generate_json_to_a_file_and_caps_on_the_decoded_size(saved, tmp_path) -> None:
    model_dir, _, _, _ = saved
    clip = write_video(tmp_path / "big.mp4", random_video(4, 240, 320, seed=5), fps=4)
    out = tmp_path / "out" / "g.json"
    result = _generate(["--model", str(model_dir), "--video", str(clip), "--prompt", "x", "--num-frames", "4",
                        "--max-new-tokens", "1", "--max-side", "96", "--json", str(out)])
    data = json.loads(out.read_text())
    assert data["frame_size"] == [72, 96] and "answer:" in result.stdout  # a file: the tables still print
    assert "decoded big.mp4 at 96x72 (stored 320x240" in result.stderr


def _zero_frame(path) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        c.start_encoding()


BROKEN = {
    "empty.mp4": lambda p, good: p.write_bytes(b""),
    "random.mp4": lambda p, good: p.write_bytes(np.random.default_rng(0).bytes(4096)),
    "truncated.mp4": lambda p, good: p.write_bytes(good.read_bytes()[: good.stat().st_size // 3]),
    "notes.mp4": lambda p, good: p.write_text("this is a text file renamed to .mp4\n"),
    "zero_frames.mkv": lambda p, good: _zero_frame(p),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_videos_give_a_vcast_error_naming_the_file(saved, tmp_path, name: str) -> None:
    model_dir, clip, _, _ = saved
    bad = tmp_path / name
    BROKEN[name](bad, clip)
    for command in (["generate", "--model", str(model_dir), "--prompt", "x"], ["viz", "--out", str(tmp_path / "k.png")]):
        result = runner.invoke(app, [*command, "--video", str(bad)])
        assert isinstance(result.exception, VideoDecodeError), result.exception
        assert name in str(result.exception)


def test_console_script_prints_one_line_for_a_broken_video(tmp_path, monkeypatch, capfd) -> None:
    # capfd sees the file descriptors, so FFmpeg's own logging would show up here too.
    from vcast.cli import main

    bad = tmp_path / "random.mp4"
    bad.write_bytes(np.random.default_rng(1).bytes(4096))
    monkeypatch.setattr(sys, "argv", ["vcast", "viz", "--video", str(bad), "--out", str(tmp_path / "k.png")])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capfd.readouterr().err.strip()
    assert err.startswith("vcast: error: cannot read video") and "random.mp4" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_viz_without_and_with_model(saved, tmp_path) -> None:
    model_dir, clip, _, _ = saved
    result = runner.invoke(app, ["viz", "--video", str(clip), "--out", str(tmp_path / "px.png"), "--num-frames", "8"])
    assert result.exit_code == 0, (result.output, result.exception)
    # 64x96 frames -> a 2x3 grid of 32-pixel tokens; 8 frames x 6 tokens, 25% kept.
    assert "12/48 tokens kept" in result.stdout and (tmp_path / "px.png").read_bytes()[:4] == b"\x89PNG"
    result = runner.invoke(app, ["viz", "--video", str(clip), "--model", str(model_dir), "--out",
                                 str(tmp_path / "m.png"), "--num-frames", "6", "--retain-ratio", "0.5"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "36/72 tokens kept" in result.stdout and (tmp_path / "m.png").stat().st_size > 1000


@pytest.mark.parametrize("args,picture", [([], "keep.png"), (["--stream"], "stream.png")])
def test_demo_writes_to_a_temporary_directory_by_default_and_says_where(tmp_path, monkeypatch, args,
                                                                        picture) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    assert list(tmp_path.iterdir()) == []  # nothing in the current directory
    where = Path(result.stdout.strip().splitlines()[-1].split(" to ")[1].split(" (")[0])
    assert "pass --out DIR" in result.stdout and (where / picture).is_file()
    shutil.rmtree(where)


def test_demo_runs_offline_and_reports(tmp_path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, (result.output, result.exception)
    out = result.stdout
    assert "2240" in out and "560" in out  # tiny model: 8 temporal patches x 280 tokens, 25% kept
    assert "Qwen3-VL-8B on such a clip" in out and "TFLOPs" in out and "560 -> 140 video tokens" in out
    assert "the largest budgets go to frames [" in out  # whether they sit at the cuts is the core's business
    for name in ("clip.mp4", "keep.png", "keep_pixels.png"):
        assert (tmp_path / name).stat().st_size > 1000
    frames, meta = load_video(tmp_path / "clip.mp4")
    assert frames.shape == (16, 224, 320, 3) and meta.fps == 4.0


def test_write_video_error_is_a_vcast_error(tmp_path) -> None:
    with pytest.raises(InputError, match="cannot write video"):
        write_video(tmp_path / "missing_dir" / "x.mp4", np.zeros((2, 8, 8, 3), np.uint8))
