"""vcast's pruning methods in vLLM's form: a token count known before encoding, then a mask.

vLLM sizes a video's placeholder tokens at prompt processing, before the vision encoder runs, from
three numbers only; after the encoder it asks for a boolean mask whose True count must equal that
size. Its built-in methods (``vllm/multimodal/video_prune/evs.py``, ``vidcom2.py``) each provide::

    compute_retained_tokens_count(tokens_per_frame, num_frames, q) -> int
    compute_retention_mask(video_embeds, video_size_thw, spatial_merge_size, q) -> BoolTensor

with ``q`` vLLM's pruning rate (``--video-pruning-rate``: the fraction *removed*), so vcast's
``retain_ratio = 1 - q``. Every vcast method that only drops tokens keeps exactly
``K = vcast.core.budget.total_budget(T, N, retain_ratio)`` tokens, a function of (T, N, q) alone,
so it fits this contract unchanged. Two kinds of configuration do not:

- ``retain_ratio="auto"`` (the adaptive ratio, any method) picks the ratio from the encoded
  features, so the count cannot be known when vLLM needs it; it is refused with
  :class:`~vcast.ConfigError`.
- ``reproduce="authors"`` / ``"vllm"`` keep another code's counts; refused as well (vLLM's own EVS
  and VidCom2 are vLLM's ``--video-pruning-method``).
- Merging methods (``pool``, ``visionzip``, ``fastvid``) replace kept tokens by merged features;
  vLLM's mask can only drop tokens, so they are refused too.

Nothing here imports vLLM: these are plain functions on tensors, usable and tested without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from vcast.config import MethodConfig
from vcast.core.budget import total_budget
from vcast.errors import ConfigError, InputError, VCastError
from vcast.methods import get_method, list_methods, make_config

__all__ = [
    "compute_retained_tokens_count",
    "compute_retention_mask",
    "method_config",
    "pruning_functions",
    "vllm_methods",
]

AUTO_MESSAGE = (
    "retain_ratio='auto' cannot run inside vLLM: vLLM fixes a video's number of placeholder tokens "
    "at prompt processing, before the vision encoder runs, and 'auto' chooses the ratio from the "
    "encoded features. Set the ratio with vLLM's --video-pruning-rate q (retain_ratio = 1 - q)."
)


def vllm_methods() -> list[str]:
    """Registered methods that can run in vLLM's form (every pure-pruning method)."""
    return [name for name in list_methods() if not get_method(name).merges]


def _check_q(q: Any) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not math.isfinite(q) or not 0.0 <= q < 1.0:
        raise ConfigError(f"vLLM's pruning rate q must be a number in [0, 1), got {q!r}; retain_ratio = 1 - q")
    return float(q)


def method_config(method: str, q: float, **options: Any) -> MethodConfig:
    """The config of ``method`` at vLLM pruning rate ``q`` (``retain_ratio = 1 - q``), validated.

    Args:
        method: a registered method name that only drops tokens (see :func:`vllm_methods`).
        q: vLLM's pruning rate, in [0, 1).
        **options: the method's other options (e.g. ``temperature=0.5`` for ``vcast``).

    Raises:
        ConfigError: unknown or merging method, ``retain_ratio`` among the options (``"auto"`` has its
            own message), or options that vLLM's pruning cannot honour.
    """
    q = _check_q(q)
    spec = get_method(method)  # unknown names raise ConfigError
    if spec.merges:
        raise ConfigError(
            f"method {method!r} merges tokens, and vLLM's pruning interface can only drop them (a mask); "
            f"use one of {vllm_methods()}"
        )
    if "retain_ratio" in options:
        if options["retain_ratio"] == "auto":
            raise ConfigError(AUTO_MESSAGE)
        raise ConfigError("inside vLLM the ratio comes from --video-pruning-rate q (retain_ratio = 1 - q); "
                          "do not pass retain_ratio")
    if options.get("reproduce") is not None:
        raise ConfigError(
            f"reproduce={options['reproduce']!r} keeps another code's token counts, which vLLM's form does not "
            "size; for vLLM's own EVS / VidCom2 use vLLM's --video-pruning-method with VCAST_VLLM_FIXES=1, and "
            "run reproduce='authors' through vcast.apply on a transformers model")
    cfg = make_config(method, retain_ratio=1.0 - q, **options)
    if cfg.prune_at != "llm":
        raise ConfigError(f"prune_at={cfg.prune_at!r}: vLLM prunes after the vision encoder; only 'llm' applies")
    if cfg.positions != "original":
        raise ConfigError("vLLM keeps each kept token's original (t, h, w) position; positions must be 'original'")
    return cfg


def _kept_count(cfg: MethodConfig, tokens_per_frame: int, num_frames: int) -> int:
    return total_budget(num_frames, tokens_per_frame, cfg.retain_ratio, getattr(cfg, "min_tokens_per_frame", 1))


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be an int >= 1, got {value!r}")
    return value


def compute_retained_tokens_count(tokens_per_frame: int, num_frames: int, q: float, *, method: str = "vcast",
                                  **options: Any) -> int:
    """How many of a video's ``num_frames * tokens_per_frame`` tokens ``method`` keeps at pruning rate q.

    vLLM calls this at prompt processing (before encoding) to size the video's placeholders.

    Args:
        tokens_per_frame: N, LLM tokens per frame (post-merger).
        num_frames: T, frames as the LLM sees them (temporal patches).
        q: vLLM's pruning rate in [0, 1); ``retain_ratio = 1 - q``.
        method, **options: see :func:`method_config`.

    Returns:
        ``K = total_budget(T, N, 1 - q)``: ``round(T*N*(1-q))``, at least one token per frame.
    """
    cfg = method_config(method, q, **options)
    return _kept_count(cfg, _positive_int("tokens_per_frame", tokens_per_frame),
                       _positive_int("num_frames", num_frames))


def _grid(video_size_thw: torch.Tensor | Sequence[int], spatial_merge_size: int) -> tuple[int, int, int]:
    size = video_size_thw.tolist() if isinstance(video_size_thw, torch.Tensor) else list(video_size_thw)
    if len(size) != 3:
        raise InputError(f"video_size_thw must hold (T, H, W), got {size!r}")
    t, h, w = (int(v) for v in size)
    m = _positive_int("spatial_merge_size", spatial_merge_size)
    if t < 1 or h < m or w < m or h % m or w % m:
        raise InputError(f"video_size_thw {(t, h, w)} is not a T x H x W grid divisible by spatial_merge_size {m}")
    return t, h // m, w // m


def compute_retention_mask(video_embeds: torch.Tensor, video_size_thw: torch.Tensor | Sequence[int],
                           spatial_merge_size: int, q: float, *, method: str = "vcast",
                           channels: int | None = None, **options: Any) -> torch.Tensor:
    """Which of a video's tokens ``method`` keeps, as vLLM's flat boolean mask.

    Args:
        video_embeds: ``Tensor[T*H*W/m^2, D]``, the video's post-merger tokens in raster order
            (frame, row, column), any float dtype, any device.
        video_size_thw: ``(T, H, W)`` of the patch grid before the spatial merge (LongTensor or ints).
        spatial_merge_size: m, the merger's side (tokens per frame ``N = (H/m) * (W/m)``).
        q: vLLM's pruning rate in [0, 1).
        method, **options: see :func:`method_config`.
        channels: score only the first ``channels`` channels (vLLM's Qwen3-VL passes its deepstack
            features concatenated after the LLM's embedding; vcast scores what the LLM sees).

    Returns:
        ``BoolTensor[T*N]`` on ``video_embeds.device``; its True count equals
        :func:`compute_retained_tokens_count` for the same (N, T, q), always.

    Raises:
        InputError: the embeddings do not match the grid, or hold NaN/inf.
        VCastError: the method kept a different number of tokens than its count (a broken method).
    """
    cfg = method_config(method, q, **options)
    t, rows, cols = _grid(video_size_thw, spatial_merge_size)
    n = rows * cols
    if not isinstance(video_embeds, torch.Tensor) or video_embeds.dim() != 2 or video_embeds.shape[0] != t * n:
        shape = tuple(video_embeds.shape) if isinstance(video_embeds, torch.Tensor) else type(video_embeds).__name__
        raise InputError(f"video_embeds must be Tensor[T*N, D] = [{t * n}, D] for grid {(t, rows, cols)}, got {shape}")
    features = video_embeds.reshape(t, n, -1)
    if channels is not None:
        features = features[..., : _positive_int("channels", channels)]
    selection = get_method(method).select(features, cfg)
    expected = _kept_count(cfg, n, t)
    if selection.num_kept != expected:
        raise VCastError(
            f"method {method!r} kept {selection.num_kept} tokens but its count for (N={n}, T={t}, q={q}) is "
            f"{expected}; vLLM sized the prompt with the count, so this method cannot run in vLLM"
        )
    return selection.keep_mask().reshape(-1)


CountFn = Callable[..., int]
MaskFn = Callable[..., torch.Tensor]


def pruning_functions(method: str = "vcast", **options: Any) -> tuple[CountFn, MaskFn]:
    """``(count_fn, mask_fn)`` with exactly the signatures of vLLM's built-in pruning modules.

    The options are validated now (raises :class:`~vcast.ConfigError`), not at the first request.

    Args:
        method, **options: see :func:`method_config`.
    """
    method_config(method, 0.5, **options)

    def count_fn(tokens_per_frame: int, num_frames: int, q: float) -> int:
        return compute_retained_tokens_count(tokens_per_frame, num_frames, q, method=method, **options)

    def mask_fn(video_embeds: torch.Tensor, video_size_thw, spatial_merge_size: int, q: float) -> torch.Tensor:
        return compute_retention_mask(video_embeds, video_size_thw, spatial_merge_size, q, method=method, **options)

    count_fn.__doc__ = f"vcast {method!r}: {compute_retained_tokens_count.__doc__}"
    mask_fn.__doc__ = f"vcast {method!r}: {compute_retention_mask.__doc__}"
    return count_fn, mask_fn
