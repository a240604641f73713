"""Method registry: names to (config class, selection function)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vcast.config import MethodConfig
from vcast.core.selection import Selection
from vcast.errors import ConfigError

SelectFn = Callable[[torch.Tensor, MethodConfig], Selection]
BatchSelectFn = Callable[[list[torch.Tensor], MethodConfig], list[Selection]]


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
    """

    name: str
    config_cls: type[MethodConfig]
    select: SelectFn
    select_batch: BatchSelectFn | None = None
    merges: bool = False
    summary: str = ""

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
