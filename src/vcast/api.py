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
import warnings
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

    Handles on one model form a stack: :func:`apply` on a model that already prunes warns, puts the
    new handle on top and suspends the earlier one; removing the top handle restores the one below
    it (as leaving a nested :func:`enabled` block does). Removing a suspended handle takes it out of
    the stack, so it is not restored later.

    Attributes:
        model: the patched model.
        config: the method config in use.
        adapter: the family adapter doing the work.
    """

    def __init__(self, model: nn.Module, adapter: ModelAdapter) -> None:
        self.model = model
        self.adapter = adapter
        self.config: MethodConfig = adapter.config
        self._below: PruneHandle | None = None  # the handle this one suspended
        self._removed = False

    @property
    def active(self) -> bool:
        """True while this handle's pruning is the one installed on the model."""
        return getattr(self.model, HANDLE_ATTR, None) is self

    @property
    def removed(self) -> bool:
        """True after :meth:`remove` (until the handle is entered again with ``with``)."""
        return self._removed

    @property
    def stats(self) -> dict:
        """Stats of the last prefill this handle pruned (empty before the first one).

        They stay readable after :meth:`remove` (e.g. after a ``with`` block) and describe that
        prefill only: a removed handle prunes nothing. Entering it again with ``with`` clears them.

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
        """Install on top of the model's current handle (suspended until this one is removed)."""
        top = getattr(self.model, HANDLE_ATTR, None)
        if top is self:
            return
        if top is not None:
            top.adapter.detach()
        self._below = top
        self._removed = False
        self.adapter.attach()
        setattr(self.model, HANDLE_ATTR, self)

    def remove(self) -> None:
        """Uninstall. The model prunes as it did before this handle was applied: vanilla, or with
        the earlier handle this one suspended. Safe to call twice."""
        self._removed = True
        if not self.active:
            return  # already removed, or suspended under a later handle: it will not come back
        self.adapter.detach()
        below, self._below = self._below, None
        seen = {id(self)}
        while below is not None and below._removed and id(below) not in seen:
            seen.add(id(below))
            below = below._below
        if below is not None and below._removed:
            below = None
        if below is None:
            delattr(self.model, HANDLE_ATTR)
        else:
            below.adapter.attach()
            setattr(self.model, HANDLE_ATTR, below)

    def __enter__(self) -> PruneHandle:
        if self._removed:  # ``with handle:`` after remove(): install it again for the block
            self.adapter.stats, self.adapter.selections = {}, []
            self._attach()
        elif not self.active:
            raise InputError("this PruneHandle is suspended under a later vcast.apply on the same model; "
                             "remove that handle first, or use vcast.enabled(...) for a scoped change")
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "removed" if self._removed else "suspended"
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
        A :class:`PruneHandle`; ``handle.remove()`` restores the model as it was before this call.
        Applying to a model that already prunes warns and stacks: the new handle replaces the
        earlier one until it is removed, then the earlier one is back (see :class:`PruneHandle`).

    Raises:
        UnsupportedModelError: unknown architecture. ConfigError: bad or unsupported options.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"apply() needs a torch nn.Module model, got {type(model).__name__}")
    return _install(model, config, method, overrides, warn=True, processor=processor)


def _install(model: nn.Module, config: MethodConfig | None, method: str | None, overrides: dict[str, Any],
             *, warn: bool, processor: Any = None) -> PruneHandle:
    cfg = _resolve_config(config, method, overrides)
    adapter_cls = resolve_adapter(model, cfg)
    previous = getattr(model, HANDLE_ATTR, None)
    if warn and previous is not None:
        warnings.warn(f"{type(model).__name__} already prunes with {previous!r}; the new vcast.apply replaces it "
                      "until the new handle is removed, then the earlier one is restored. Call .remove() on "
                      "the earlier handle first, or use vcast.enabled(...) for a scoped change.",
                      UserWarning, stacklevel=3)
    adapter = adapter_cls(model, cfg) if processor is None else adapter_cls(model, cfg, processor=processor)
    handle = PruneHandle(model, adapter)
    handle._attach()
    return handle


@contextmanager
def enabled(model: nn.Module, config: MethodConfig | None = None, *, method: str | None = None,
            processor: Any = None, **overrides: Any) -> Iterator[PruneHandle]:
    """Scoped :func:`apply`: pruning inside the ``with`` block; on exit the model is as before
    (vanilla, or with the pruning that was applied before the block). Nesting is expected here, so
    it does not warn."""
    if not isinstance(model, nn.Module):
        raise InputError(f"enabled() needs a torch nn.Module model, got {type(model).__name__}")
    handle = _install(model, config, method, overrides, warn=False, processor=processor)
    try:
        yield handle
    finally:
        handle.remove()
