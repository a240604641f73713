"""vcast: training-free, coordinate-preserving visual-token pruning for Video LLMs.

Public surface::

    cfg = vcast.VCastConfig(retain_ratio=0.25)
    sel = vcast.select_tokens(features, cfg)          # Tensor[T, N, D] -> Selection
    vcast.list_methods(); vcast.get_method("evs")     # the method zoo
"""

__version__ = "0.1.0"

from vcast.config import MethodConfig, VCastConfig
from vcast.core.select import select_tokens
from vcast.core.selection import Selection
from vcast.errors import ConfigError, InputError, UnsupportedModelError, VCastError, VideoDecodeError
from vcast.methods import get_method, list_methods, make_config, register_method

__all__ = [
    "ConfigError",
    "InputError",
    "MethodConfig",
    "Selection",
    "UnsupportedModelError",
    "VCastConfig",
    "VCastError",
    "VideoDecodeError",
    "__version__",
    "get_method",
    "list_methods",
    "make_config",
    "register_method",
    "select_tokens",
]
