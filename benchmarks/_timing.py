"""Timing helpers shared by the benchmark scripts: interleaved repeats, median, ratios in one run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def sync(device: str) -> None:
    """Wait for queued kernels on ``device`` (no-op on CPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, device: str = "cpu",
                     warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, measured round-robin so that machine noise hits
    every contender alike. Returns ``{name: median seconds}``."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
        sync(device)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}
