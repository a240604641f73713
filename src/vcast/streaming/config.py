"""Options of a stream beyond the pruning method's config."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vcast.errors import ConfigError


def _number(name: str, value, low: float, high: float = math.inf, low_open: bool = True) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value > low if low_open else value >= low) and value <= high)
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" + ("" if high == math.inf else f" and <= {high}")
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True)
class StreamConfig:
    """How a stream keeps its cache and times its frames.

    Attributes:
        max_video_tokens: hard cap on the cache slots the video holds: its tokens plus the text the
            processor writes around each frame that still has tokens (Qwen3-VL's ``<t seconds>``, Gemma 4's
            ``MM:SS``, ...), so the cache never holds more than the prompt's prefix plus this between
            questions (None: no cap, the cache grows with the stream). When a commit would exceed it,
            tokens are evicted by :mod:`vcast.core.evict` (curvature weight x recency, D'Hondt, skeleton).
        half_life: frames (LLM frames) over which an older frame's eviction weight halves relative to
            newer ones; None: ``max_video_tokens / (N * retain_ratio + frame text)``, the frames the cap
            holds at the configured ratio; ``math.inf``: no recency preference.
        skeleton: fraction of ``max_video_tokens`` reserved for the uniform skeleton of old frames
            (one token per frame on a power-of-two stride, its frame's text counted too: Qwen3-VL
            writes a timestamp around each frame), in [0, 0.5].
        fps: frame rate assumed for chunks added without timestamps.
    """

    max_video_tokens: int | None = None
    half_life: float | None = None
    skeleton: float = 0.1
    fps: float = 2.0

    def __post_init__(self) -> None:
        m = self.max_video_tokens
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ConfigError(f"max_video_tokens must be an int >= 1 or None, got {m!r}")
        if self.half_life is not None and self.half_life != math.inf:
            _number("half_life", self.half_life, 0.0)
        _number("skeleton", self.skeleton, 0.0, 0.5, low_open=False)
        _number("fps", self.fps, 0.0)

    def resolved_half_life(self, slots_per_frame: float) -> float:
        """The half-life in frames (see ``half_life``), for frames taking ``slots_per_frame`` cache slots."""
        if self.half_life is not None:
            return float(self.half_life)
        if self.max_video_tokens is None:
            return math.inf
        return max(1.0, self.max_video_tokens / max(slots_per_frame, 1.0))

    @property
    def skeleton_slots(self) -> int:
        """Frames the skeleton may hold: ``floor(max_video_tokens * skeleton)`` (0 without a cap)."""
        return 0 if self.max_video_tokens is None else int(self.max_video_tokens * self.skeleton)
