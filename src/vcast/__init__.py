"""vcast: training-free, coordinate-preserving visual-token pruning for Video LLMs.

Public surface::

    cfg = vcast.VCastConfig(retain_ratio=0.25)
    sel = vcast.select_tokens(features, cfg)          # Tensor[T, N, D] -> Selection
    sel = vcast.select_tokens(features, method="evs", retain_ratio=0.25)   # any registered method
    vcast.list_methods(); vcast.get_method("evs")     # the method zoo
    handle = vcast.apply(model, cfg)                  # prune this model instance at prefill
    with vcast.enabled(model, retain_ratio=0.15): ... # scoped
    s = vcast.stream(model, processor, cfg)           # a live video: add_frames / ask / stats
    frames, meta = vcast.video.load_video("clip.mp4", num_frames=32, processor=processor)
"""

__version__ = "0.1.0"

from vcast import (
    testing,  # noqa: F401  (vcast.testing.tiny_model: offline tiny models)
    video,  # noqa: F401  (vcast.video.load_video: PyAV decoding; av loads on first use)
)
from vcast.api import PruneHandle, apply, enabled
from vcast.config import MethodConfig, VCastConfig
from vcast.core.selection import Selection
from vcast.errors import (
    ConfigError,
    InputError,
    ReproduceError,
    UnsupportedModelError,
    VCastError,
    VideoDecodeError,
)
from vcast.methods import get_method, list_methods, make_config, register_method
from vcast.methods.select import select_tokens
from vcast.streaming import VideoStream, stream

__all__ = [
    "ConfigError",
    "InputError",
    "MethodConfig",
    "PruneHandle",
    "ReproduceError",
    "Selection",
    "UnsupportedModelError",
    "VCastConfig",
    "VCastError",
    "VideoDecodeError",
    "VideoStream",
    "__version__",
    "apply",
    "enabled",
    "get_method",
    "list_methods",
    "make_config",
    "register_method",
    "select_tokens",
    "stream",
]
