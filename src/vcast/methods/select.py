"""One tensor-level call for every registered method: :func:`select_tokens` (``vcast.select_tokens``).

::

    sel = vcast.select_tokens(features, method="evs", retain_ratio=0.25)        # any method, by name
    sel = vcast.select_tokens(features, vcast.VCastConfig(retain_ratio=0.25))  # or by config
    sels = vcast.select_tokens([video_a, video_b], method="vidcom2", reproduce="authors")
"""

from __future__ import annotations

from typing import Any

import torch

from vcast.config import MethodConfig, VCastConfig
from vcast.core import select as core
from vcast.core.selection import Selection
from vcast.errors import InputError
from vcast.methods.registry import get_method, make_config


def select_tokens(
    features: torch.Tensor | list[torch.Tensor],
    config: MethodConfig | None = None,
    *,
    method: str | None = None,
    check_finite_features: bool = True,
    **options: Any,
) -> Selection | list[Selection]:
    """Select the tokens a pruning method keeps, on plain tensors.

    Args:
        features: one video ``Tensor[T, N, D]`` (T frames, N post-merger tokens per frame in raster
            order, D channels) or a list of videos with different T and N (same D, same device);
            fp32 / fp16 / bf16, CPU or CUDA.
        config: a method config (e.g. :class:`~vcast.VCastConfig`, ``make_config("evs", ...)``);
            default: the method's defaults.
        method: a registered method name (``vcast.list_methods()``); default ``config.method``, or
            ``"vcast"`` without a config. Must agree with ``config`` when both are given.
        check_finite_features: V-CAST's core can skip its NaN/inf check (one host sync on CUDA) with
            False; the other methods always check.
        **options: config fields, e.g. ``retain_ratio=0.1`` (or ``"auto"``), ``reproduce="authors"``,
            or a method's own options (``scope="frame"`` for ``random``, ``grid_hw=(h, w)`` for
            ``pool`` on non-square frames). Unknown names raise :class:`~vcast.ConfigError`.

    Returns:
        A :class:`~vcast.Selection` for a tensor input, a list of them (input order) for a list:
        ``keep_index LongTensor[K]`` (sorted flat indices into ``T*N``), ``frame_budget
        LongTensor[T]`` (sums to K), ``curvature FloatTensor[T]`` (the method's frame score), and
        for merging methods ``merged_features Tensor[K, D]``. K is ``round(T*N*r)`` for every method
        by default; a ``reproduce=`` mode keeps what the reproduced code keeps.
    """
    if config is not None and not isinstance(config, MethodConfig):
        raise InputError(f"config must be a MethodConfig (e.g. vcast.VCastConfig), got {type(config).__name__}")
    name = method if method is not None else (config.method if config is not None else "vcast")
    cfg = make_config(name, config, **options)
    if isinstance(cfg, VCastConfig):  # V-CAST's vectorised core (batched over videos)
        return core.select_tokens(features, cfg, check_finite_features=check_finite_features)
    videos, single = core.as_video_list(features)
    out = get_method(name).run(videos, cfg)
    return out[0] if single else out
