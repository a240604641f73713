"""The frame grid ``(h, w)`` for methods that need the spatial layout of a frame's N tokens.

The method contract passes ``features[T, N, D]`` only. Methods that need the ``h x w`` grid of the
N post-merger tokens (``pool``) take it as an optional config field ``grid_hw: (h, w) | None``:

- ``None`` (default): the grid is square, ``h = w = sqrt(N)``; a non-square N raises
  :class:`~vcast.errors.InputError` asking for ``grid_hw``.
- ``(h, w)``: must satisfy ``h * w == N`` for every video the config is used on.

The field is optional and lives only on the configs that need it, so the contract and every other
method are unchanged (backwards compatible). Model adapters, which know each video's grid (e.g.
Qwen's ``video_grid_thw // spatial_merge_size``), call :func:`config_with_grid` per video (it
returns the config unchanged for methods without a ``grid_hw`` field) or :func:`run_with_grids`
for a batch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from vcast.config import MethodConfig
from vcast.core.selection import Selection
from vcast.errors import ConfigError, InputError
from vcast.methods.registry import MethodSpec, get_method

__all__ = ["check_grid_hw", "config_with_grid", "resolve_grid", "run_with_grids", "takes_grid"]


def check_grid_hw(value: Any) -> tuple[int, int] | None:
    """Validate a ``grid_hw`` config value; lists (from JSON) become tuples. Raises ConfigError."""
    if value is None:
        return None
    ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
    )
    if not ok:
        raise ConfigError(f"grid_hw must be None or a pair of ints >= 1 (h, w), got {value!r}")
    return int(value[0]), int(value[1])


def resolve_grid(grid_hw: tuple[int, int] | None, tokens: int) -> tuple[int, int]:
    """The ``(h, w)`` grid of a frame with ``tokens`` tokens (see the module docstring)."""
    if grid_hw is None:
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise InputError(
                f"this method needs the frame grid, and N={tokens} tokens per frame is not a square; "
                "pass grid_hw=(h, w) in its config (model adapters fill it from the video grid)"
            )
        return side, side
    h, w = grid_hw
    if h * w != tokens:
        raise InputError(f"grid_hw={grid_hw} has {h * w} cells but the frames have N={tokens} tokens")
    return h, w


def takes_grid(config: MethodConfig) -> bool:
    """True when the config's method uses a frame grid (it has a ``grid_hw`` field)."""
    return any(f.name == "grid_hw" for f in dataclasses.fields(config))


def config_with_grid(config: MethodConfig, grid_hw: tuple[int, int]) -> MethodConfig:
    """``config`` with ``grid_hw`` set when its method takes a grid; otherwise ``config`` itself."""
    return config.replace(grid_hw=tuple(grid_hw)) if takes_grid(config) else config


def run_with_grids(
    method: str | MethodSpec, videos: list[torch.Tensor], config: MethodConfig, grids: list[tuple[int, int]]
) -> list[Selection]:
    """Run a method on videos whose frame grids are known, one ``(h, w)`` per video.

    Methods that take a grid run once per distinct grid (with :func:`config_with_grid`); the others
    run on the whole batch in one call. Returns one :class:`Selection` per video, in input order.
    """
    spec = get_method(method) if isinstance(method, str) else method
    if len(grids) != len(videos):
        raise InputError(f"got {len(videos)} videos but {len(grids)} grids; pass one (h, w) per video")
    if not takes_grid(config):
        return spec.run(list(videos), config)
    by_grid: dict[tuple[int, int], list[int]] = {}
    for i, g in enumerate(grids):
        by_grid.setdefault((int(g[0]), int(g[1])), []).append(i)
    out: list[Selection | None] = [None] * len(videos)
    for grid, ids in by_grid.items():
        for i, sel in zip(ids, spec.run([videos[i] for i in ids], config_with_grid(config, grid))):
            out[i] = sel
    return out  # type: ignore[return-value]
