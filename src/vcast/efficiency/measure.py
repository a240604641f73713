"""Measured savings on a scaled-down random Qwen3-VL: prefill latency, generate latency, peak memory.

The model and clip are :mod:`vcast.efficiency.scaled_model`'s presets (``full``: Qwen3-VL-2B widths,
8 vision blocks + 9 LLM layers, 1568 video tokens; ``quick``: half of that).

Per repeat, vanilla and every pruned mode run back to back on the same inputs (``generate`` with a
fixed number of new tokens, greedy); each ratio is median(pruned) / median(vanilla) over the repeats:

* ``prefill_latency``: time from the ``generate`` call to its first new token (vision encoder, the
  pruning itself, LLM prefill, first sampling step), taken from a streamer callback;
* ``generate_latency``: the whole ``generate`` call (prefill plus ``max_new_tokens - 1`` decode steps);

  On CPU both are the process's CPU time by default (``clock="cpu"``, ``time.process_time``): with
  one torch thread that is the time the work takes on an idle core, and other processes sharing
  the machine do not leak into it (wall-clock medians of a few repeats on a busy 2-core box swung
  from 0.5x to 1.6x for the same setting). ``clock="wall"`` times wall-clock instead; CUDA always
  times wall-clock after a synchronize.
* ``peak_memory``: CPU: the process's peak resident set during the call minus its resident set just
  before it (Linux ``VmHWM`` reset through ``/proc/self/clear_refs``; glibc's mmap threshold is pinned
  at 128 KiB and ``malloc_trim`` runs first, so freed tensors are back with the OS between calls;
  None when the vanilla call added nothing measurable, as with toy models). It is the memory the
  call adds on top of the weights and inputs (activations, KV cache, transient buffers); weights are
  excluded because pruning cannot change them. CUDA: ``max_memory_allocated`` minus the allocation
  before the call.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch

from vcast.api import enabled
from vcast.efficiency.analytic import compare, default_vision_block
from vcast.efficiency.model_specs import spec_from_hf_config
from vcast.efficiency.scaled_model import PRESETS, ScaledPreset, build_scaled_model, clip_inputs
from vcast.errors import ConfigError


class _FirstTokenClock:
    """A ``generate`` streamer that records when the first new token arrives (on ``now``'s clock)."""

    def __init__(self, now: Callable[[], float] = time.perf_counter) -> None:
        self.now = now
        self.calls = 0
        self.first: float | None = None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2 and self.first is None:  # call 1 is the prompt
            self.first = self.now()

    def end(self) -> None:
        pass


class _PeakMemory:
    """Peak memory added during a block (see the module docstring for what each device measures)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.peak = 0
        if not self.cuda:
            try:
                open("/proc/self/clear_refs", "w").close()
            except OSError as err:
                raise ConfigError("peak-memory measurement on CPU needs Linux /proc/self/clear_refs") from err
            self._libc = None
            with contextlib.suppress(OSError):  # M_MMAP_THRESHOLD = -3: big buffers go back to the OS on free
                self._libc = ctypes.CDLL("libc.so.6")
                self._libc.mallopt(-3, 128 * 1024)

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            return int(re.search(rf"{key}:\s+(\d+)", f.read()).group(1)) * 1024

    def __enter__(self) -> _PeakMemory:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            if self._libc is not None:
                self._libc.malloc_trim(0)  # hand freed heap pages back, so the baseline is what is live
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._base = self._status("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self.peak = self._status("VmHWM") - self._base


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _timed_generate(model, inputs, max_new_tokens: int, device: str, clock_name: str = "wall") -> dict[str, float]:
    now = CLOCKS[clock_name]
    clock = _FirstTokenClock(now)
    with _PeakMemory(device) as mem, torch.no_grad():
        start = now()
        model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            streamer=clock,
        )
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        end = now()
    return {"prefill": clock.first - start, "generate": end - start, "memory": float(mem.peak)}


def measure(
    preset: str | ScaledPreset = "quick",
    ratios: tuple[float, ...] = (0.25,),
    modes: tuple[str, ...] = ("post", "early"),
    *,
    method: str = "vcast",
    repeats: int = 2,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    threads: int | None = 1,
    clock: str = "auto",
    clips: Sequence[tuple[int, int]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Measure vanilla vs pruned on the scaled model, all in this one run.

    Args:
        preset: ``"quick"``, ``"full"`` or a :class:`ScaledPreset`.
        ratios: retain ratios to measure.
        modes: ``"post"`` (``prune_at="llm"``) and/or ``"early"`` (``prune_at="vision:k"``, k =
            :func:`~vcast.efficiency.default_vision_block` of the scaled tower).
        method: the registered pruning method.
        repeats: interleaved repeats; ratios use the medians.
        device, dtype: where to run (``"cuda"`` with bf16 on a GPU).
        threads: ``torch.set_num_threads`` during the run (None leaves it).
        clock: ``"cpu"`` (process CPU time), ``"wall"``, or ``"auto"``: CPU time on CPU, wall-clock on CUDA.
        clips: ``(frames, size)`` of each clip to measure on the one model (default: the preset's
            clip); small clips show where pruning stops paying (:data:`CROSSOVER_CLIPS`).
        progress: called with a short message before each generate call.

    Returns:
        One row per (clip, mode, ratio): ``device``, ``mode``, ``ratio``, ``prefill_latency_ratio``,
        ``generate_latency_ratio``, ``peak_memory_ratio`` (medians; ``prefill_latency_ratio_range``
        gives the extremes over the repeats), plus the analytic FLOP ratios of the same
        scaled model and clip, the token counts and the setup.
    """
    from vcast.methods import make_config

    preset = PRESETS[preset] if isinstance(preset, str) else preset
    if clock == "auto":
        clock = "wall" if device.startswith("cuda") else "cpu"
    if clock not in CLOCKS or (clock == "cpu" and device.startswith("cuda")):
        raise ConfigError(f"clock must be 'auto', 'wall' or (on CPU) 'cpu', got {clock!r} on {device}")
    bad = sorted(set(modes) - {"post", "early"})
    if bad or not modes or repeats < 1:
        raise ConfigError(
            f"modes must be a non-empty subset of ('post', 'early') and repeats >= 1; got {modes}, {repeats}"
        )
    clips = [(preset.frames, preset.size)] if clips is None else [(int(f), int(z)) for f, z in clips]
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    rows = []
    try:
        model, processor = build_scaled_model(preset, dtype=dtype, device=device)
        spec = spec_from_hf_config(model.config, name=preset.name)
        block = default_vision_block(spec)
        variants = [
            (
                mode,
                r,
                make_config(method, retain_ratio=r, prune_at="llm" if mode == "post" else f"vision:{block}"),
            )
            for r in ratios
            for mode in modes
        ]
        warm = clip_inputs(processor, 4, 64, device)
        for _, _, cfg in [(None, None, None), *variants]:  # warm-up: every path once on a tiny clip
            with enabled(model, cfg) if cfg is not None else nullcontext():
                _timed_generate(model, warm, 2, device)
        setup = {"method": method, "repeats": repeats, "dtype": str(dtype).replace("torch.", ""), "clock": clock,
                 "threads": torch.get_num_threads() if threads is None else threads, "model": preset.name,
                 "max_new_tokens": preset.max_new_tokens,
                 "device": device if not device.startswith("cuda") else torch.cuda.get_device_name()}
        for c, (frames, size) in enumerate(clips):
            tell = None
            if progress:
                def tell(msg: str, c=c, frames=frames, size=size) -> None:
                    progress(f"clip {c + 1}/{len(clips)} ({frames}x{size}px): {msg}")
            rows += _measure_clip(model, processor, spec, variants, frames, size, repeats, preset.max_new_tokens,
                                  device, clock, setup, tell)
    finally:
        torch.set_num_threads(old_threads)
    return rows


# Clips of one temporal patch (2 frames) from 4 to 196 video tokens on the scaled models (32-px
# tokens), plus the preset's own clip: where post-encoder pruning stops paying.
CROSSOVER_CLIPS = ((2, 64), (2, 128), (2, 224), (2, 448))


def _measure_clip(model, processor, spec, variants, frames: int, size: int, repeats: int, max_new_tokens: int,
                  device: str, clock: str, setup: dict, progress: Callable[[str], None] | None) -> list[dict]:
    """The rows of one clip: vanilla and every variant interleaved ``repeats`` times."""
    inputs = clip_inputs(processor, frames, size, device)
    video_tokens = int((inputs["input_ids"] == model.config.video_token_id).sum())
    text_tokens = inputs["input_ids"].numel() - video_tokens
    _timed_generate(model, inputs, 1, device)  # the full-size buffers once
    samples: dict[int, list[dict]] = {i: [] for i in range(-1, len(variants))}
    kept: dict[int, int] = {}
    order = list(range(-1, len(variants)))
    for rep in range(repeats):
        shift = rep % len(order)  # rotate, so no variant always runs first
        for i in order[shift:] + order[:shift]:
            if progress:
                name = "vanilla" if i < 0 else f"{variants[i][0]} r={variants[i][1]}"
                progress(f"repeat {rep + 1}/{repeats}: {name}")
            if i < 0:
                samples[i].append(_timed_generate(model, inputs, max_new_tokens, device, clock))
                continue
            with enabled(model, variants[i][2]) as handle:
                samples[i].append(_timed_generate(model, inputs, max_new_tokens, device, clock))
                kept[i] = handle.stats["video_tokens_after"]

    def spread(i: int, key: str) -> list[float]:  # the extremes the repeats allow: [best, worst]
        pruned, vanilla = [s[key] for s in samples[i]], [s[key] for s in samples[-1]]
        return [min(pruned) / max(vanilla), max(pruned) / min(vanilla)]

    def med(i: int, key: str) -> float:
        return statistics.median(s[key] for s in samples[i])

    groups = -(-frames // spec.vision.temporal_patch_size)
    prompt = text_tokens - groups * spec.text_tokens_per_group - spec.extra_video_tokens
    rows = []
    for i, (mode, ratio, cfg) in enumerate(variants):
        flops = compare(spec, frames, size, size, ratio, cfg.prune_at, kept_tokens=kept[i], prompt_tokens=prompt)
        rows.append(
            {
                "device": setup["device"],
                "mode": mode,
                "ratio": ratio,
                "prefill_latency_ratio": med(i, "prefill") / med(-1, "prefill"),
                "prefill_latency_ratio_range": spread(i, "prefill"),
                "generate_latency_ratio": med(i, "generate") / med(-1, "generate"),
                "peak_memory_ratio": med(i, "memory") / med(-1, "memory") if med(-1, "memory") > 0 else None,
                "analytic_vision_flops_ratio": flops["vision_flops_ratio"],
                "analytic_total_prefill_flops_ratio": flops["total_prefill_flops_ratio"],
                "prune_at": cfg.prune_at,
                "visual_tokens": flops["visual_tokens"],
                "kept_visual_tokens": kept[i],
                "frames": frames,
                "size": size,
                **{k: v for k, v in setup.items() if k != "device"},
            }
        )
    return rows


__all__ = ["CROSSOVER_CLIPS", "PRESETS", "ScaledPreset", "measure"]
