"""vcast.video: PyAV decode/encode round trips, sampling, metadata, and broken or hostile files."""

from __future__ import annotations

import warnings

import av
import numpy as np
import pytest

from vcast.errors import InputError, VideoDecodeError
from vcast.video import load_video, sample_indices, write_video


def ramp(t: int, h: int = 32, w: int = 48) -> np.ndarray:
    """Frames whose red channel encodes the frame index (8 grey levels apart), survives H.264."""
    frames = np.full((t, h, w, 3), 64, dtype=np.uint8)
    frames[..., 0] = (np.arange(t) * 8 % 256)[:, None, None]
    return frames


def frame_ids(frames: np.ndarray) -> list[int]:
    return [int(round(v / 8)) for v in frames[:, :, :, 0].mean(axis=(1, 2))]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    return str(write_video(tmp_path_factory.mktemp("v") / "ramp.mp4", ramp(30), fps=10))


def test_round_trip_all_frames_and_metadata(clip: str) -> None:
    frames, meta = load_video(clip)
    assert frames.dtype == np.uint8 and frames.shape == (30, 32, 48, 3)
    assert frame_ids(frames) == list(range(30))
    assert meta.total_num_frames == 30 and meta.fps == pytest.approx(10.0)
    assert meta.duration == pytest.approx(3.0)
    assert (meta.width, meta.height) == (48, 32) and meta.video_backend == "pyav"
    assert meta.frames_indices == list(range(30))
    assert meta.timestamps[:3] == pytest.approx([0.0, 0.1, 0.2])


@pytest.mark.parametrize("n, expected", [(1, [0]), (2, [0, 29]), (4, [0, 10, 19, 29]), (7, None), (100, None)])
def test_num_frames_samples_evenly(clip: str, n: int, expected: list[int] | None) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames, meta = load_video(clip, num_frames=n)
    assert any("asked for 100 frames" in str(w.message) for w in caught) == (n > 30)
    want = expected or np.floor(np.linspace(0, 29, min(n, 30)) + 0.5).astype(int).tolist()
    assert meta.frames_indices == want
    assert frame_ids(frames) == want  # the decoded pixels really are those frames


def test_fps_sampling(clip: str) -> None:
    frames, meta = load_video(clip, fps=2.5)
    assert meta.frames_indices == [0, 4, 8, 12, 16, 20, 24, 28]
    assert frame_ids(frames) == meta.frames_indices
    assert load_video(clip, fps=50)[1].frames_indices == list(range(30))  # above the native rate: every frame


def test_sample_indices_never_repeat() -> None:
    for total in range(1, 60):
        for n in range(1, total + 1):
            idx = sample_indices(total, 30.0, num_frames=n)
            assert len(idx) == n and np.all(np.diff(idx) > 0) and idx[0] == 0 and idx[-1] == (total - 1 if n > 1 else 0)


@pytest.mark.parametrize("ext", ["mkv", "webm"])
def test_other_containers(tmp_path, ext: str) -> None:
    # mkv/webm carry no frame count: it is found by demuxing.
    path = write_video(tmp_path / f"c.{ext}", ramp(12), fps=6)
    frames, meta = load_video(path, num_frames=4)
    assert meta.total_num_frames == 12 and meta.frames_indices == [0, 4, 7, 11]
    assert frame_ids(frames) == [0, 4, 7, 11]


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 2, 2), (3, 17, 23), (5, 8, 200)])
def test_tiny_odd_and_single_frame_videos(tmp_path, shape) -> None:
    t, h, w = shape
    src = np.random.default_rng(0).integers(0, 255, (t, h, w, 3), dtype=np.uint8)
    frames, meta = load_video(write_video(tmp_path / "s.mp4", src, fps=5, crf=0))
    assert frames.shape == (t, h, w, 3) and meta.total_num_frames == t


def test_bad_arguments(clip: str) -> None:
    with pytest.raises(InputError, match="not both"):
        load_video(clip, num_frames=4, fps=2)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match="num_frames"):
            load_video(clip, num_frames=bad)
    for bad in (0, -2.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="fps"):
            load_video(clip, fps=bad)
    with pytest.raises(InputError, match="uint8"):
        write_video("x.mp4", np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"\[T, H, W, 3\]"):
        write_video("x.mp4", np.zeros((0, 4, 4, 3), np.uint8))


def _zero_frame_mkv(path) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        c.start_encoding()


def _audio_only(path) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        c.mux(s.encode(frame))
        c.mux(s.encode(None))


BROKEN = {
    "missing.mp4": (None, "no such file"),
    "empty.mp4": (lambda p, good: p.write_bytes(b""), "empty"),
    "random.mp4": (lambda p, good: p.write_bytes(np.random.default_rng(1).bytes(20_000)), "cannot open"),
    "text.mp4": (lambda p, good: p.write_text("not a video\n" * 50), "cannot open"),
    "truncated.mp4": (lambda p, good: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]), "cannot open"),
    "header_only.mp4": (lambda p, good: p.write_bytes(good.read_bytes()[:64]), "cannot open"),
    "zero_frames.mkv": (lambda p, good: _zero_frame_mkv(p), "cannot open"),
    "zero_frames.mp4": (lambda p, good: _zero_frame_mkv(p), "no video stream"),
    "audio_only.m4a": (lambda p, good: _audio_only(p), "no video stream"),
    "garbage_stream.mp4": (None, "no frame"),
    "a_folder": (lambda p, good: p.mkdir(), "directory"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_raise_vcast_error_with_file_name(tmp_path, clip: str, name: str) -> None:
    from pathlib import Path

    make, message = BROKEN[name]
    path = tmp_path / name
    if name == "garbage_stream.mp4":  # valid header (faststart), every frame's data overwritten
        good = _faststart(tmp_path / "fs.mp4")
        data = bytearray(good.read_bytes())
        rng = np.random.default_rng(2)
        data[3000:] = rng.integers(0, 256, len(data) - 3000, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
    elif make is not None:
        make(path, Path(clip))
    with pytest.raises(VideoDecodeError, match=message) as info:
        load_video(path, num_frames=4)
    assert name in str(info.value)
    assert info.value.__cause__ is None  # no FFmpeg traceback chained underneath


def _faststart(path, t: int = 40):
    frames = np.random.default_rng(0).integers(0, 255, (t, 64, 64, 3), dtype=np.uint8)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=10)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    return path


def test_truncated_stream_decodes_what_is_there_with_a_warning(tmp_path) -> None:
    good = _faststart(tmp_path / "fs.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames, meta = load_video(cut, num_frames=8)
    assert any("truncated" in str(w.message) and "cut.mp4" in str(w.message) for w in caught)
    assert 0 < meta.total_num_frames < 40 and len(frames) == 8
    assert meta.frames_indices[-1] == meta.total_num_frames - 1


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_fuzzed_files_decode_or_raise_video_decode_error(tmp_path, ext: str) -> None:
    # Flipped bytes, truncations and overwritten runs: load_video returns consistent frames or raises
    # VideoDecodeError; nothing else escapes (an earlier version leaked AttributeError on unknown codecs).
    from vcast.testing import random_video

    good = write_video(tmp_path / f"good.{ext}", random_video(12, 32, 48, seed=1), fps=6).read_bytes()
    rng = np.random.default_rng(0)
    bad = tmp_path / f"bad.{ext}"
    outcomes = set()
    for i in range(90):
        data = bytearray(good)
        if i % 3 == 0:
            for _ in range(int(rng.integers(1, 20))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        elif i % 3 == 1:
            data = data[: int(rng.integers(1, len(data)))]
        else:
            start = int(rng.integers(0, len(data)))
            end = min(len(data), start + int(rng.integers(1, 500)))
            data[start:end] = rng.integers(0, 256, end - start, dtype=np.uint8).tobytes()
        bad.write_bytes(bytes(data))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frames, meta = load_video(bad, num_frames=4)
        except VideoDecodeError as err:
            assert bad.name in str(err)
            outcomes.add("error")
            continue
        assert frames.dtype == np.uint8 and frames.ndim == 4 and len(frames) == len(meta.frames_indices) >= 1
        outcomes.add("decoded")
    assert outcomes == {"error", "decoded"}  # the fuzzing reached both outcomes


def _mkv_with_its_tail_cut(tmp_path, frames: int = 250) -> tuple:
    from vcast.testing import random_video

    full = write_video(tmp_path / "full.mkv", random_video(frames, 32, 48, seed=1), fps=25)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return full, cut


def test_truncated_mkv_warns_although_it_has_no_frame_count(tmp_path) -> None:
    # MKV stores no frame count, so the count comes from demuxing what is there: compare with the duration.
    full, cut = _mkv_with_its_tail_cut(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frames, meta = load_video(cut, num_frames=16)
    messages = [str(w.message) for w in caught]
    assert any("looks truncated" in m and "cut.mkv" in m and "~250 frames" in m for m in messages), messages
    assert len(frames) == 16 and 50 < meta.total_num_frames < 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_video(full, num_frames=16)[1].total_num_frames == 250  # the whole file: no warning


@pytest.fixture(scope="module")
def hd_clip(tmp_path_factory) -> str:
    from vcast.testing import random_video

    return str(write_video(tmp_path_factory.mktemp("hd") / "hd.mp4", random_video(6, 720, 1280, seed=2), fps=5))


@pytest.mark.parametrize("kwargs,shape", [({"max_side": 256}, (144, 256)), ({"max_pixels": 100_000}, (237, 422)),
                                          ({"max_side": 4000}, (720, 1280)), ({}, (720, 1280))])
def test_resolution_caps_keep_the_aspect_ratio_and_never_upscale(hd_clip, kwargs, shape) -> None:
    frames, meta = load_video(hd_clip, **kwargs)
    assert frames.shape == (6, *shape, 3) and (meta.height, meta.width) == shape


def test_capped_decode_holds_only_capped_frames_in_memory(hd_clip) -> None:
    # numpy's allocations are traced: a full 720p frame is 2.7 MB, six capped frames are 0.4 MB in all.
    import tracemalloc

    tracemalloc.start()
    try:
        frames, _ = load_video(hd_clip, max_side=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_500_000 and frames.nbytes == 6 * 144 * 256 * 3


def _tiny_types():
    from vcast.testing import TINY_MODEL_TYPES

    return TINY_MODEL_TYPES


@pytest.mark.parametrize("model_type", _tiny_types())
def test_processor_cap_gives_the_processor_the_same_input(hd_clip, model_type) -> None:
    # Decoded at the size the processor resizes to: its output shapes (tokens, grid) do not change.
    from vcast.errors import UnsupportedModelError
    from vcast.testing import make_inputs, tiny_model

    try:
        _, processor = tiny_model(model_type)
    except UnsupportedModelError as err:  # Gemma 4's processor needs torchvision before transformers 5.24
        if "torchvision" not in str(err):
            raise
        pytest.skip(str(err))
    full, meta = load_video(hd_clip)
    capped, capped_meta = load_video(hd_clip, processor=processor)
    assert capped.shape[1] * capped.shape[2] <= full.shape[1] * full.shape[2]  # no cap where the size is unknown
    assert abs(capped.shape[2] / capped.shape[1] - 1280 / 720) < 0.05
    a = make_inputs(processor, "Q?", videos=[full])
    b = make_inputs(processor, "Q?", videos=[capped])
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert torch_equal_or_none(a.get("video_grid_thw"), b.get("video_grid_thw"))


def torch_equal_or_none(x, y) -> bool:
    import torch

    return (x is None and y is None) or torch.equal(x, y)


def test_bad_caps_raise(hd_clip) -> None:
    for kwargs in ({"max_pixels": 0}, {"max_side": -3}, {"max_side": 2.5}):
        with pytest.raises(InputError, match="positive integer"):
            load_video(hd_clip, **kwargs)


def test_probe_reads_the_header(hd_clip) -> None:
    from vcast.video import probe

    assert probe(hd_clip) == {"frames": 6, "fps": pytest.approx(5.0), "width": 1280, "height": 720}
    with pytest.raises(VideoDecodeError, match="no such file"):
        probe("/no/such/clip.mp4")


def test_decoder_threads_are_bounded_for_huge_frames(monkeypatch) -> None:
    # FFmpeg's frame threads each hold ~3 bytes per pixel: 8K on 16 cores would be ~1.6 GB of buffers.
    from types import SimpleNamespace

    from vcast import video

    monkeypatch.setattr(video.os, "cpu_count", lambda: 16)

    def stream(w, h):
        return SimpleNamespace(codec_context=SimpleNamespace(width=w, height=h, thread_count=0), width=w, height=h)

    big, hd = stream(7680, 4320), stream(1920, 1080)
    video._bound_decode_threads(big)
    video._bound_decode_threads(hd)
    assert big.codec_context.thread_count == 2 and video.DECODE_MEMORY_BUDGET >= 2 * 3 * 7680 * 4320
    assert hd.codec_context.thread_count == 0  # FFmpeg's own choice: the budget allows 43 threads
