"""Video files in and out, with PyAV (FFmpeg bundled in the wheel; no system FFmpeg needed).

:func:`load_video` returns ``(frames, metadata)``: ``frames`` a ``uint8`` array ``[T, H, W, 3]`` (RGB)
and ``metadata`` a :class:`transformers.video_utils.VideoMetadata`, the pair a Qwen-VL processor takes
as ``processor(videos=[frames], video_metadata=[metadata], do_sample_frames=False, ...)``.

Frames are resized *while decoding* (FFmpeg's scaler, one frame at a time) when a resolution cap
applies: ``max_pixels`` / ``max_side``, or ``processor=`` for the size the model's own processor
will use (:func:`processor_pixels`). Peak memory then follows the cap, not the file: an 8K clip
costs what its capped frames cost.

Every failure to read a file (missing, empty, not a video, no video stream, no decodable frame,
garbage inside the stream) raises :class:`~vcast.errors.VideoDecodeError` naming the file; no raw
FFmpeg / PyAV exception escapes. A file whose stream ends early (truncated download, even where
the container has no frame count, as in MKV) is read up to the last frame that decodes, with a
:class:`UserWarning` that says so; asking for more frames than the file has warns too.

:func:`write_video` encodes frames to H.264 (VP9 for ``.webm``), for tests and the demo.
"""

from __future__ import annotations

import math
import os
import warnings
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vcast.errors import InputError, VideoDecodeError

if TYPE_CHECKING:
    from transformers.video_utils import VideoMetadata

__all__ = ["load_video", "probe", "processor_pixels", "sample_indices", "write_video"]

# Exceptions PyAV raises on hostile input besides its own FFmpegError (bad headers can surface as
# Python errors from PyAV's Cython layer). Caught only around calls into av.
_AV_FAILURES: tuple[type[BaseException], ...] = (OSError, ValueError, IndexError, OverflowError,
                                                 RuntimeError, MemoryError, ZeroDivisionError)


def _av():
    import av

    return av


def _reason(err: BaseException) -> str:
    """FFmpeg's one-line reason (``strerror``) without the errno and path noise."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return str(text).strip()


def _fail(path: Path, what: str, err: BaseException | None = None) -> VideoDecodeError:
    msg = f"cannot read video '{path}': {what}"
    if err is not None:
        msg += f" (FFmpeg: {_reason(err)})"
    return VideoDecodeError(msg)


def _check_args(num_frames: int | None, fps: float | None) -> None:
    if num_frames is not None and fps is not None:
        raise InputError("pass num_frames (uniform sampling) or fps (sampling rate), not both")
    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer))
                                   or num_frames < 1):
        raise InputError(f"num_frames must be a positive integer, got {num_frames!r}")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float))
                            or not math.isfinite(fps) or fps <= 0):
        raise InputError(f"fps must be a positive finite number, got {fps!r}")


def sample_indices(total: int, native_fps: float | None, num_frames: int | None = None,
                   fps: float | None = None) -> np.ndarray:
    """Which frames to keep, as strictly increasing ``int64`` indices into ``[0, total)``.

    ``num_frames``: that many frames spread evenly from the first to the last (fewer if the video is
    shorter; frames are never repeated). ``fps``: one frame every ``native_fps / fps`` frames,
    starting at frame 0 (every frame if ``fps >= native_fps``). Neither: every frame.
    """
    if num_frames is not None:
        n = min(int(num_frames), total)
        if n == 1:
            return np.zeros(1, dtype=np.int64)
        # floor(x + 0.5), not np.round: half-to-even rounding can repeat an index when the step is ~1.5.
        return np.floor(np.linspace(0.0, total - 1, n) + 0.5).astype(np.int64)
    if fps is not None:
        if native_fps is None:
            raise InputError("the file has no usable frame rate, so fps sampling is undefined; pass num_frames")
        step = max(native_fps / fps, 1.0)
        n = max(1, math.ceil(total / step - 1e-9))
        return np.minimum(np.floor(np.arange(n) * step + 1e-9), total - 1).astype(np.int64)
    return np.arange(total, dtype=np.int64)


def _open(path: Path):
    av = _av()
    if not path.exists():
        raise VideoDecodeError(f"cannot read video '{path}': no such file")
    if path.is_dir():
        raise VideoDecodeError(f"cannot read video '{path}': it is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"cannot read video '{path}': the file is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except (av.FFmpegError, *_AV_FAILURES) as err:
        raise _fail(path, "FFmpeg cannot open it as a media file (not a video, or a truncated or corrupt one)", err) from None
    if not container.streams.video:
        container.close()
        raise _fail(path, "the file has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # an unknown or damaged codec id: FFmpeg has no decoder for it
        container.close()
        raise _fail(path, "FFmpeg has no decoder for its video codec (unsupported or corrupt stream header)")
    stream.thread_type = "AUTO"
    _bound_decode_threads(stream)
    return container, stream


# FFmpeg's frame threads each hold a decoded frame and its references (measured: ~95 MB per thread
# for 8K H.264, i.e. about 3 bytes per pixel). Their count follows the CPU cores (cores + 1), so a
# 16-core machine decoding 8K would hold ~1.6 GB before a single frame is resized. The thread count
# is bounded so that those buffers stay within this budget (8K: 2 threads, 4K: 10); smaller frames
# keep FFmpeg's own choice.
DECODE_MEMORY_BUDGET = 256 * 2**20
_BYTES_PER_PIXEL_PER_THREAD = 3


def _bound_decode_threads(stream) -> None:
    ctx = stream.codec_context
    pixels = int(ctx.width or stream.width or 0) * int(ctx.height or stream.height or 0)
    if pixels <= 0:
        return
    allowed = max(1, DECODE_MEMORY_BUDGET // (_BYTES_PER_PIXEL_PER_THREAD * pixels))
    if allowed <= (os.cpu_count() or 1):
        ctx.thread_count = int(allowed)


def _native_fps(stream) -> float | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if math.isfinite(value) and 0 < value <= 10_000:
                return value
    return None


def _frame_count(path: Path, container, stream) -> int:
    """Frames in the stream: the container's count when plausible, else one demux pass (no decoding)."""
    declared = int(stream.frames or 0)
    # Every frame needs at least one byte, so a count above the file size is a lie (hostile header).
    if 0 < declared <= path.stat().st_size:
        return declared
    av = _av()
    count = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                count += 1
    except (av.FFmpegError, *_AV_FAILURES):
        pass  # a damaged tail: the packets read so far are what the file holds
    return count


def _declared_frames(container, stream, native_fps: float | None) -> int | None:
    """Frames the header's duration promises (stream duration, else the container's), or None."""
    if not native_fps:
        return None
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration:
        seconds = container.duration / 1_000_000  # AV_TIME_BASE
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return round(seconds * native_fps)


def _looks_truncated(counted: int, declared: int | None) -> bool:
    """A demuxed count well short of the duration in the header: the file's tail is missing."""
    return declared is not None and counted < 0.9 * declared and declared - counted >= 2


def probe(path: str | os.PathLike) -> dict:
    """Read a video's header (and, where it has no frame count, demux it once; nothing is decoded).

    Returns:
        ``{"frames", "fps", "width", "height"}``: frames in the stream, native rate (None if the
        file has none) and the stored frame size.

    Raises:
        VideoDecodeError: the file cannot be opened as a video (as :func:`load_video`).
    """
    path = Path(path)
    container, stream = _open(path)
    try:
        return {"frames": _frame_count(path, container, stream), "fps": _native_fps(stream),
                "width": int(stream.width or 0), "height": int(stream.height or 0)}
    finally:
        container.close()


def processor_pixels(processor, num_frames: int, height: int, width: int) -> int | None:
    """Pixels per frame at which ``processor`` (a transformers processor or its video processor)
    will feed a ``num_frames``-frame video of ``height x width`` to its model, or None if unknown.

    Read from the processor itself: ``get_num_of_video_patches`` where it has one (Qwen-VL family
    and the other patch-budget processors: the per-frame pixels their own resize rule gives), else
    a fixed ``size`` of ``height`` x ``width`` (LLaVA-OneVision's 384 x 384: the pixels a frame of
    this aspect ratio needs to cover it without upscaling), else ``shortest_edge`` (a side).
    """
    vp = getattr(processor, "video_processor", None) or processor
    patches = getattr(vp, "get_num_of_video_patches", None)
    patch = getattr(vp, "patch_size", None)
    if callable(patches) and isinstance(patch, int):
        tps = int(getattr(vp, "temporal_patch_size", 1) or 1)
        steps = -(-max(num_frames, tps) // tps)
        try:
            count = int(patches(num_frames=max(num_frames, tps), height=height, width=width))
        except (TypeError, ValueError, KeyError, AttributeError):
            count = 0
        if count > 0:
            return count // steps * patch * patch
    size = getattr(vp, "size", None) or {}
    get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
    if get("height") and get("width"):
        scale = max(get("height") / height, get("width") / width)  # cover the fixed size
        return math.ceil(height * scale) * math.ceil(width * scale)
    if get("shortest_edge") and not callable(patches):
        scale = get("shortest_edge") / min(height, width)
        return math.ceil(height * scale) * math.ceil(width * scale)
    return None


def _decode_size(height: int, width: int, max_pixels: int | None, max_side: int | None) -> tuple[int, int]:
    """The frame size under the caps (aspect ratio kept, never upscaled, at least 1 x 1)."""
    scale = 1.0
    if max_pixels is not None:
        scale = min(scale, math.sqrt(max_pixels / (height * width)))
    if max_side is not None:
        scale = min(scale, max_side / max(height, width))
    if scale >= 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def _check_cap(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise InputError(f"{name} must be a positive integer (or None for no cap), got {value!r}")


def _decode(path: Path, wanted: np.ndarray, size: tuple[int, int] | None,
            stored: tuple[int, int] | None = None) -> tuple[np.ndarray, int, bool]:
    """Decode frames ``wanted`` (sorted) at ``size`` (default: the first frame's). Returns (frames
    [k, H, W, 3], frames decoded, hit an error)."""
    av = _av()
    container, stream = _open(path)
    shrinking = size is not None and stored is not None and size[0] * size[1] < stored[0] * stored[1]
    interpolation = "AREA" if shrinking else None
    out: np.ndarray | None = None
    got = decoded = 0
    broken = False
    last = int(wanted[-1])
    try:
        for frame in container.decode(stream):
            if decoded == wanted[got]:
                if out is None:
                    h, w = size or (frame.height, frame.width)
                    if h < 1 or w < 1:
                        raise _fail(path, f"frames have an invalid size {w}x{h}")
                    out = np.empty((len(wanted), h, w, 3), dtype=np.uint8)
                # FFmpeg's scaler resizes this one frame; only the capped frame is ever held in numpy.
                out[got] = frame.to_ndarray(format="rgb24", width=out.shape[2], height=out.shape[1],
                                            interpolation=interpolation)
                got += 1
            decoded += 1
            if decoded > last:
                break
    except VideoDecodeError:
        raise
    except (av.FFmpegError, *_AV_FAILURES):
        broken = True
    finally:
        container.close()
    if out is None:
        out = np.empty((0, 0, 0, 3), dtype=np.uint8)
    return out[:got], decoded, broken


def load_video(path: str | os.PathLike, num_frames: int | None = None, fps: float | None = None, *,
               max_pixels: int | None = None, max_side: int | None = None,
               processor=None) -> tuple[np.ndarray, VideoMetadata]:
    """Decode a video file into RGB frames and the metadata transformers' video processors want.

    Args:
        path: a video file FFmpeg can read (mp4, mkv, webm, avi, mov, ...).
        num_frames: sample this many frames evenly over the whole video (first and last included);
            a shorter video gives all its frames, never repeated ones (with a warning).
        fps: or sample at this rate (frames per second of video time). Pass at most one of the two;
            with neither, every frame is returned.
        max_pixels: cap on pixels per frame (aspect ratio kept, never upscaled), applied while
            decoding, so memory follows the cap, not the file.
        max_side: cap on the longer side, in pixels (same rules).
        processor: the model's processor: cap at the size it will resize frames to
            (:func:`processor_pixels`), so nothing is decoded that it would throw away. Combines
            with the other caps (the smallest wins). None of the three: frames at the stored size.

    Returns:
        ``(frames, metadata)``: ``frames`` is ``uint8`` ``[T, H, W, 3]`` RGB, all frames at one size
        (the stream's first frame size, or the capped size); ``metadata`` is a ``VideoMetadata``
        with ``total_num_frames`` (frames in the file), ``fps`` (native rate), ``duration`` (s),
        ``width``, ``height`` (of the returned frames), ``frames_indices`` (the ``T`` indices
        returned, so timestamps are ``frames_indices / fps``) and ``video_backend="pyav"``. Pass
        both to the processor with ``do_sample_frames=False``.

    Raises:
        VideoDecodeError: missing/empty/unreadable file, no video stream or no decodable frame.
        InputError: bad ``num_frames`` / ``fps`` / caps.
    """
    from transformers.video_utils import VideoMetadata

    _check_args(num_frames, fps)
    _check_cap("max_pixels", max_pixels)
    _check_cap("max_side", max_side)
    path = Path(path)
    container, stream = _open(path)
    try:
        native_fps = _native_fps(stream)
        total = _frame_count(path, container, stream)
        declared = None if stream.frames else _declared_frames(container, stream, native_fps)
        stored = (stream.height, stream.width) if stream.height and stream.width else None
    finally:
        container.close()
    if total == 0:
        raise _fail(path, "the video stream has no frames")
    if _looks_truncated(total, declared):
        warnings.warn(f"video '{path}' looks truncated: its header gives {declared / native_fps:.1f} s "
                      f"(~{declared} frames at {native_fps:g} fps) but the file holds {total} frames; "
                      "sampling over those", UserWarning, stacklevel=2)
    if num_frames is not None and num_frames > total:
        warnings.warn(f"asked for {num_frames} frames but video '{path}' has {total}: using all {total} "
                      "(frames are never repeated)", UserWarning, stacklevel=2)
    wanted = sample_indices(total, native_fps, num_frames, fps)
    size = stored
    if stored is not None:
        cap = max_pixels
        if processor is not None:
            need = processor_pixels(processor, len(wanted), *stored)
            cap = need if cap is None or (need is not None and need < cap) else cap
        size = _decode_size(*stored, cap, max_side)
    frames, decoded, broken = _decode(path, wanted, size, stored)
    if decoded == 0:
        raise _fail(path, "no frame of the video stream could be decoded (corrupt or unsupported stream)")
    if len(frames) < len(wanted):
        # The stream ended (or broke) before the last wanted frame: sample again over what decodes.
        warnings.warn(f"video '{path}' is truncated or damaged: {decoded} of {total} frames decode; "
                      "sampling over those", UserWarning, stacklevel=2)
        total = decoded
        wanted = sample_indices(total, native_fps, num_frames, fps)
        frames, decoded, broken = _decode(path, wanted, size, stored)
        if len(frames) < len(wanted):
            raise _fail(path, "the stream decodes differently on a second read (corrupt file)")
    height, width = frames.shape[1], frames.shape[2]
    metadata = VideoMetadata(
        total_num_frames=int(total),
        fps=native_fps,
        width=int(width),
        height=int(height),
        duration=float(total / native_fps) if native_fps else None,
        video_backend="pyav",
        frames_indices=[int(i) for i in wanted],
    )
    return frames, metadata


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0, *, crf: int = 18) -> Path:
    """Encode RGB frames to a video file (H.264 in mp4/mkv/mov, VP9 in webm).

    Args:
        path: output file; the container comes from the extension.
        frames: ``uint8`` ``[T, H, W, 3]`` RGB, ``T >= 1`` (a torch tensor is accepted too).
        fps: frame rate (> 0).
        crf: H.264 constant-rate factor (0 = lossless, 18 = visually lossless, 23 = x264 default).

    Even sizes use yuv420p (plays everywhere); odd widths or heights use yuv444p, which 4:2:0 cannot hold.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    av = _av()
    frames = np.asarray(frames.cpu() if hasattr(frames, "cpu") else frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1 or 0 in frames.shape:
        raise InputError(f"frames must be [T, H, W, 3] with T >= 1, got shape {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise InputError(f"frames must be uint8 RGB, got {frames.dtype}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive finite number, got {fps!r}")
    path = Path(path)
    _, height, width, _ = frames.shape
    webm = path.suffix.lower() == ".webm"
    codec = "libvpx-vp9" if webm else "libx264"
    pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
    options = {"crf": str(int(crf))} | ({"b": "0"} if webm else {})
    try:
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001), options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
            for image in np.ascontiguousarray(frames):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode(None))
    except (av.FFmpegError, *_AV_FAILURES) as err:
        raise InputError(f"cannot write video '{path}' ({codec}, {width}x{height}): {_reason(err)}") from None
    return path
