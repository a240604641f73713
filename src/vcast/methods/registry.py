"""Method registry: names to (config class, selection function)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vcast.config import MethodConfig
from vcast.core.selection import Selection
from vcast.errors import ConfigError

SelectFn = Callable[[torch.Tensor, MethodConfig], Selection]
BatchSelectFn = Callable[[list[torch.Tensor], MethodConfig], list[Selection]]


def _never(config: MethodConfig) -> bool:
    return False


def _at_ratio(fn: SelectFn) -> SelectFn:
    """``fn`` with ``retain_ratio="auto"`` resolved first (the adaptive-ratio rule picks the video's
    ratio, then ``fn`` runs at it)."""

    @functools.wraps(fn)
    def select(features: torch.Tensor, config: MethodConfig) -> Selection:
        if getattr(config, "is_auto", False):
            from vcast.core.select import adaptive_ratios

            ratio = adaptive_ratios([features], config.min_ratio, config.max_ratio)[0]
            config = config.replace(retain_ratio=ratio)
        return fn(features, config)

    return select


def _batch_at_ratio(fn: BatchSelectFn) -> BatchSelectFn:
    """:func:`_at_ratio` for a batch function: with ``"auto"``, each video runs at its own ratio."""

    @functools.wraps(fn)
    def select_batch(videos: list[torch.Tensor], config: MethodConfig) -> list[Selection]:
        if not getattr(config, "is_auto", False):
            return fn(videos, config)
        from vcast.core.select import adaptive_ratios

        ratios = adaptive_ratios(videos, config.min_ratio, config.max_ratio)
        return [fn([v], config.replace(retain_ratio=r))[0] for v, r in zip(videos, ratios)]

    return select_batch


@dataclass(frozen=True)
class MethodSpec:
    """A registered pruning method.

    Attributes:
        name: registry key (e.g. ``"vcast"``).
        config_cls: its config dataclass.
        select: ``(features Tensor[T, N, D], config) -> Selection``.
        select_batch: optional vectorised ``(list of Tensor[T_b, N_b, D], config) -> list[Selection]``.
        merges: True if the method returns merged features (not pure pruning).
        summary: one line for ``vcast methods`` and tables.
        keeps_every_frame: ``config -> bool``, True when that config guarantees at least one kept
            token in every frame (checked over the registry by the tests).
        every_frame_note: how the method meets that guarantee, or why it may leave a frame empty
            (shown by ``vcast methods`` and the README).
        native_auto: True if ``select`` / ``select_batch`` handle ``retain_ratio="auto"`` themselves;
            otherwise the spec resolves it first (:func:`vcast.core.select.adaptive_ratios`) and the
            functions always receive a numeric ratio.
    """

    name: str
    config_cls: type[MethodConfig]
    select: SelectFn
    select_batch: BatchSelectFn | None = None
    merges: bool = False
    summary: str = ""
    keeps_every_frame: Callable[[MethodConfig], bool] = _never
    every_frame_note: str = ""
    native_auto: bool = False

    def __post_init__(self) -> None:
        if not self.native_auto:
            object.__setattr__(self, "select", _at_ratio(self.select))
            if self.select_batch is not None:
                object.__setattr__(self, "select_batch", _batch_at_ratio(self.select_batch))

    @property
    def reproduce_modes(self) -> tuple[str, ...]:
        """The ``reproduce=`` modes of this method's config (``()`` if none)."""
        return tuple(self.config_cls.REPRODUCE_MODES)

    def run(self, videos: list[torch.Tensor], config: MethodConfig) -> list[Selection]:
        """Select tokens for several videos (vectorised when the method supports it)."""
        if not isinstance(config, self.config_cls):
            raise ConfigError(f"method {self.name!r} needs a {self.config_cls.__name__}, got {type(config).__name__}")
        if self.select_batch is not None:
            return self.select_batch(list(videos), config)
        return [self.select(v, config) for v in videos]


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> MethodSpec:
    """Add a method to the registry (a name may be registered once)."""
    if spec.name in _REGISTRY:
        raise ConfigError(f"a method named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def list_methods() -> list[str]:
    """Names of the registered methods, in registration order."""
    return list(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``name``; unknown names raise :class:`ConfigError`."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown pruning method {name!r}; registered: {list_methods()}") from None


def make_config(method: str, config: MethodConfig | None = None, **overrides: Any) -> MethodConfig:
    """Build (or override) the config of ``method`` from keyword options."""
    spec = get_method(method)
    if config is None:
        return spec.config_cls().replace(**overrides)  # unknown option names raise ConfigError
    if not isinstance(config, spec.config_cls):
        raise ConfigError(f"method {method!r} takes a {spec.config_cls.__name__}, got {type(config).__name__}")
    return config.replace(**overrides) if overrides else config
