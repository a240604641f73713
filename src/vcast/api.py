"""The user-facing switch: ``vcast.apply(model, config)`` and ``with vcast.enabled(model, ...)``.

::

    handle = vcast.apply(model, vcast.VCastConfig(retain_ratio=0.25))   # this instance only
    out = model.generate(**inputs, max_new_tokens=64)
    print(handle.stats)                                                 # the last prefill
    handle.remove()                                                     # vanilla again

    with vcast.enabled(model, method="evs", retain_ratio=0.25):         # any registered method
        model.generate(**inputs)
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from vcast.config import MethodConfig
from vcast.errors import InputError
from vcast.methods import make_config
from vcast.models import ModelAdapter, resolve_adapter

HANDLE_ATTR = "_vcast_handle"


class PruneHandle:
    """The pruning installed on one model instance.

    Attributes:
        model: the patched model.
        config: the method config in use.
        adapter: the family adapter doing the work.
    """

    def __init__(self, model: nn.Module, adapter: ModelAdapter) -> None:
        self.model = model
        self.adapter = adapter
        self.config: MethodConfig = adapter.config

    @property
    def active(self) -> bool:
        """True while the pruning is installed."""
        return getattr(self.model, HANDLE_ATTR, None) is self

    @property
    def stats(self) -> dict:
        """Stats of the last pruned prefill (empty before the first one).

        Keys: ``method``, ``config``, ``videos`` (per video: ``frames``, ``tokens_per_frame``, ``grid``
        (its ``[rows, cols]`` token grid, where the family knows it),
        ``tokens_before``, ``tokens_kept``, ``ratio_used``, ``kept_per_frame``, ``curvature``,
        ``method``), ``video_tokens_before/after``, ``prompt_tokens_before/after`` (per row, real
        tokens), ``prefill_length_before/after`` (padded sequence lengths).
        """
        return copy.deepcopy(self.adapter.stats)

    @property
    def selections(self) -> list:
        """The :class:`~vcast.Selection` of each video of the last pruned prefill (kept indices,
        per-frame budgets, curvature), in prompt order; empty before the first one."""
        return list(self.adapter.selections)

    def _attach(self) -> None:
        previous = getattr(self.model, HANDLE_ATTR, None)
        if previous is not None and previous is not self:
            previous.remove()
        self.adapter.attach()
        setattr(self.model, HANDLE_ATTR, self)

    def remove(self) -> None:
        """Uninstall; the instance behaves exactly as before :func:`apply`. Safe to call twice."""
        self.adapter.detach()
        if self.active:
            delattr(self.model, HANDLE_ATTR)

    def __enter__(self) -> PruneHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"PruneHandle({type(self.model).__name__}, {self.config!r}, {state})"


def _resolve_config(config: MethodConfig | None, method: str | None, overrides: dict[str, Any]) -> MethodConfig:
    if config is not None and not isinstance(config, MethodConfig):
        raise InputError(f"config must be a MethodConfig (e.g. vcast.VCastConfig), got {type(config).__name__}")
    name = method if method is not None else (config.method if config is not None else "vcast")
    return make_config(name, config, **overrides)


def apply(model: nn.Module, config: MethodConfig | None = None, *, method: str | None = None,
          processor: Any = None, **overrides: Any) -> PruneHandle:
    """Make ``model`` (this instance only) prune its video tokens at prefill.

    Args:
        model: a supported transformers model (detected from ``model.config.model_type``).
        config: a method config (default: the method's defaults, V-CAST unless ``method`` says otherwise).
        method: a registered method name (``vcast.list_methods()``); builds its config from ``overrides``.
        processor: the processor that prepares this model's inputs. Only families whose prompt cannot be
            read from ``input_ids`` alone need it (InternVL: video frames are image blocks); others ignore it.
        **overrides: config fields to change, e.g. ``retain_ratio=0.15``.

    Returns:
        A :class:`PruneHandle`; ``handle.remove()`` restores the vanilla model. Applying again to the
        same model first removes the earlier handle.

    Raises:
        UnsupportedModelError: unknown architecture. ConfigError: bad or unsupported options.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"apply() needs a torch nn.Module model, got {type(model).__name__}")
    cfg = _resolve_config(config, method, overrides)
    adapter_cls = resolve_adapter(model, cfg)
    previous = getattr(model, HANDLE_ATTR, None)
    if previous is not None:
        previous.remove()
    adapter = adapter_cls(model, cfg) if processor is None else adapter_cls(model, cfg, processor=processor)
    handle = PruneHandle(model, adapter)
    handle._attach()
    return handle


@contextmanager
def enabled(model: nn.Module, config: MethodConfig | None = None, *, method: str | None = None,
            processor: Any = None, **overrides: Any) -> Iterator[PruneHandle]:
    """Scoped :func:`apply`: pruning inside the ``with`` block; on exit the model is as before
    (vanilla, or with the pruning that was applied before the block)."""
    previous = getattr(model, HANDLE_ATTR, None)
    handle = apply(model, config, method=method, processor=processor, **overrides)
    try:
        yield handle
    finally:
        handle.remove()
        if previous is not None:
            previous._attach()
