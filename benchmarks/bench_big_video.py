"""Peak memory of ``vcast viz`` and ``vcast generate`` on an 8K clip (decoding with a resolution cap).

Builds, once, in ``--work``:
  - ``8k.mp4``: 40 frames of 7680x4320 (H.264, a moving colour pattern), encoded frame by frame with
    PyAV so that writing it never holds more than one 8K frame;
  - ``model/``: a tiny random Qwen3-VL whose processor has the real Qwen3-VL video geometry (patch 16,
    merge 2, temporal patch 2, ``size={"shortest_edge": 4096, "longest_edge": 25165824}`` as in
    Qwen3-VL's ``video_preprocessor_config.json``), so the processor decides the decoded size exactly
    as for the real checkpoints; weights are tiny, the pixels and token counts are real.

Then runs each command in its own process and reports its peak resident set (``ru_maxrss`` of the
child), the decoded frame size and the wall time. The 40 raw 8K frames alone would take 3.98 GB.

Usage::

    python benchmarks/bench_big_video.py [--work DIR] [--frames 40] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 7680, 4320
QWEN3_VL_VIDEO_SIZE = {"shortest_edge": 4096, "longest_edge": 25165824}


def make_8k_clip(path: Path, frames: int, fps: int = 10) -> Path:
    """An 8K H.264 clip, encoded one frame at a time."""
    import av

    up = 8  # the pattern is drawn at 1/8 and blown up: cheap to make, still 8K to decode
    yy = np.linspace(0, 1, HEIGHT // up, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, WIDTH // up, dtype=np.float32)[None, :]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps), options={"preset": "ultrafast", "crf": "28"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for t in range(frames):
            phase = 0.15 * t
            small = np.stack([(127 + 120 * np.sin(9 * xx + 5 * yy * (c + 1) + phase + c)).astype(np.uint8)
                              for c in range(3)], axis=-1)
            frame = np.repeat(np.repeat(small, up, axis=0), up, axis=1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def save_model(path: Path) -> Path:
    """A tiny Qwen3-VL (16-pixel patches) with the real Qwen3-VL video processor geometry."""
    import torch
    from transformers import AutoModelForImageTextToText

    from vcast.testing.qwen import TOKEN_ID, TorchQwen3VLVideoProcessor, tiny_qwen_config, tiny_qwen_processor

    config = tiny_qwen_config("qwen3_vl")
    config.vision_config.patch_size = 16
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config).eval()
    model.generation_config.pad_token_id = model.generation_config.eos_token_id = TOKEN_ID["<|endoftext|>"]
    processor = tiny_qwen_processor("qwen3_vl")
    processor.video_processor = TorchQwen3VLVideoProcessor(
        size=QWEN3_VL_VIDEO_SIZE, patch_size=16, merge_size=2, temporal_patch_size=2, cap_pixels_per_frame=False,
        do_sample_frames=False)
    processor.image_processor.patch_size = 16
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def peak_rss(command: list[str]) -> dict:
    """Run ``command`` in a child of a fresh runner process; its peak RSS (MiB), wall time, output."""
    runner = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
              "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
              "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
              "time.perf_counter() - t); print(p.stdout[-1500:]); print(p.stderr[-1500:], file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", runner, *command], capture_output=True, text=True)
    head, *rest = proc.stdout.splitlines()
    code, kib, wall = head.split()
    return {"command": " ".join(command), "returncode": int(code), "peak_rss_mib": round(int(kib) / 1024, 1),
            "wall_s": round(float(wall), 1), "stdout": "\n".join(rest)[-800:], "stderr": proc.stderr[-800:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/vcast-bigvideo"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    clip, model = args.work / "8k.mp4", args.work / "model"
    if not clip.exists():
        start = time.perf_counter()
        make_8k_clip(clip, args.frames)
        print(f"encoded {clip} ({clip.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - start:.0f} s")
    if not model.exists():
        save_model(model)
    vcast = [sys.executable, "-c", "import sys; from vcast.cli import main; sys.argv[0] = 'vcast'; main()"]
    runs = {
        "viz (pixel features)": [*vcast, "viz", "--video", str(clip), "--out", str(args.work / "viz.png")],
        "viz --model": [*vcast, "viz", "--video", str(clip), "--model", str(model), "--out",
                        str(args.work / "viz_model.png"), "--device", "cpu"],
        "generate --model": [*vcast, "generate", "--model", str(model), "--video", str(clip), "--prompt",
                             "What happens?", "--max-new-tokens", "4", "--device", "cpu"],
    }
    results = {}
    for name, command in runs.items():
        results[name] = r = peak_rss(command)
        decoded = next((line for line in r["stderr"].splitlines() if "decoded" in line), "")
        print(f"{name:22s} peak RSS {r['peak_rss_mib']:7.1f} MiB, {r['wall_s']:6.1f} s, exit {r['returncode']}  "
              f"{decoded.strip()}")
        if r["returncode"]:
            print(r["stderr"])
    raw = args.frames * WIDTH * HEIGHT * 3 / 2**20
    print(f"(the {args.frames} raw 8K frames alone: {raw:.0f} MiB)")
    if args.json:
        args.json.write_text(json.dumps({"frames": args.frames, "size": [HEIGHT, WIDTH], "runs": results}, indent=1))


if __name__ == "__main__":
    main()
