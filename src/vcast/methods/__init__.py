"""The registry of pruning methods behind one contract.

A method maps one video's features ``Tensor[T, N, D]`` and its config (a
:class:`~vcast.config.MethodConfig` subclass carrying ``retain_ratio`` and the method's own options)
to a :class:`~vcast.core.Selection`. Every registered method runs through the same model adapters,
benchmarks and CLI.
"""

from vcast.methods.registry import MethodSpec, get_method, list_methods, make_config, register_method

# Importing the method modules registers them.
from vcast.methods import vcast_method  # noqa: E402,F401  isort: skip
from vcast.methods import random_method, uniform, pool, evs, vidcom2, dycoke, visionzip, fastvid  # noqa: E402,F401  isort: skip

__all__ = ["MethodSpec", "get_method", "list_methods", "make_config", "register_method"]
