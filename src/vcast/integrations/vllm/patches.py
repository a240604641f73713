"""A reversible set of attribute replacements on vLLM's modules and classes."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from vcast.integrations.vllm.settings import UnsupportedVllmError

_MISSING = object()


def load(module: str, attr: str | None = None) -> Any:
    """``module`` (or its attribute ``attr``), imported; a missing seam raises UnsupportedVllmError."""
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise UnsupportedVllmError(f"this vLLM has no module {module} that vcast's plugin needs ({e})") from None
    if attr is None:
        return mod
    if not hasattr(mod, attr):
        raise UnsupportedVllmError(f"this vLLM has no {module}.{attr}, which vcast's plugin needs")
    return getattr(mod, attr)


class Patches:
    """Attribute replacements, undone in reverse order by :meth:`remove`."""

    def __init__(self) -> None:
        self._done: list[tuple[Any, str, Any]] = []
        self.applied: list[str] = []  # human-readable "module.Class.attr" of each replacement

    def replace(self, owner: Any, attr: str, value: Any) -> Any:
        """Set ``owner.attr = value`` (it must exist); returns the original."""
        original = owner.__dict__.get(attr, _MISSING) if isinstance(owner, type) else getattr(owner, attr, _MISSING)
        if original is _MISSING:
            name = getattr(owner, "__qualname__", getattr(owner, "__name__", repr(owner)))
            raise UnsupportedVllmError(f"this vLLM has no {name}.{attr}, which vcast's plugin needs")
        self._done.append((owner, attr, original))
        setattr(owner, attr, value)
        self.applied.append(f"{getattr(owner, '__module__', '')}.{getattr(owner, '__qualname__', '')}.{attr}"
                            if isinstance(owner, type) else f"{owner.__name__}.{attr}")
        return original

    def wrap(self, owner: type, attr: str, make: Callable[[Callable], Callable]) -> None:
        """Replace the function ``owner.attr`` (defined on ``owner`` itself) by ``make(original)``."""
        original = owner.__dict__.get(attr)
        if not callable(original):
            raise UnsupportedVllmError(f"this vLLM's {owner.__module__}.{owner.__qualname__} defines no {attr}(), "
                                       "which vcast's plugin needs")
        self.replace(owner, attr, functools.wraps(original)(make(original)))

    def remove(self) -> None:
        """Put every original back (last replacement first)."""
        while self._done:
            owner, attr, original = self._done.pop()
            setattr(owner, attr, original)
        self.applied.clear()
