"""vcast's vLLM general plugin: vLLM's video pruning runs a vcast method, only when the user asks.

Registered in vcast's ``pyproject.toml``::

    [project.entry-points."vllm.general_plugins"]
    vcast = "vcast.integrations.vllm.plugin:register"

vLLM calls :func:`register` in each of its processes (front end, engine core, workers). Unless
``VCAST_VLLM_METHOD`` or ``VCAST_VLLM_FIXES`` is set (see :mod:`vcast.integrations.vllm.settings`)
it returns at once, so installing vcast changes nothing in vLLM. Otherwise it

1. checks the installed vLLM release against :data:`~vcast.integrations.vllm.settings.KNOWN_RELEASES`
   and refuses an unknown one;
2. applies that release's workarounds (:mod:`vcast.integrations.vllm.workarounds`);
3. with a method: rebinds, in each module of :data:`ROUTES`, the count and mask functions that
   vLLM's pruning model code looks up when it runs (EVS's and VidCom2's names alike) to the vcast
   method's (:func:`vcast.integrations.vllm.methods.pruning_functions`); the count runs at prompt
   processing in the front end, the mask in the worker;
4. at engine configuration (front end), checks that the model's pruning code is one of the routed
   ones and that ``--video-pruning-method`` is not asking for another method, and raises otherwise.

vLLM has no registry of pruning methods to add to (a ``Literal`` and an ``if method == "vidcom2"``
in each model file), so these rebinds are the seam; the README has the upstream proposal that would
make them unnecessary.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from vcast.errors import ConfigError, UnsupportedModelError
from vcast.integrations.vllm.methods import compute_retained_tokens_count, compute_retention_mask
from vcast.integrations.vllm.patches import Patches, load
from vcast.integrations.vllm.settings import ENV_METHOD, Settings, VllmRelease, release_for
from vcast.integrations.vllm.workarounds import apply_workarounds

logger = logging.getLogger("vllm.vcast")


@dataclass(frozen=True)
class Route:
    """One vLLM module whose pruning code vcast takes over.

    Attributes:
        module: the module whose globals the pruning code reads.
        count_names: its names of ``compute_retained_tokens_count``-like functions.
        mask_names: its names of ``compute_retention_mask``-like functions.
        model_class: the model class in ``module`` whose method calls the mask (None: the module
            only sizes prompts).
        mask_caller: that method; a model is routed when it inherits it unchanged.
        main_channels: attribute of the model giving the width of the LLM's embedding when the
            embeddings handed to the mask carry more channels (Qwen3-VL appends its deepstack
            features); vcast scores only what the LLM sees, as its transformers adapter does.
    """

    module: str
    count_names: tuple[str, ...]
    mask_names: tuple[str, ...]
    model_class: str | None = None
    mask_caller: str | None = None
    main_channels: str | None = None


_EVS = ("compute_retained_tokens_count",), ("compute_retention_mask",)
ROUTES: tuple[Route, ...] = (
    # Qwen3-VL, Qwen3-VL-MoE and the families built on them (Qwen3.5 and its MoE, ...).
    Route("vllm.model_executor.models.qwen3_vl",
          ("compute_retained_tokens_count", "vidcom2_compute_retained_tokens_count"),
          ("compute_retention_mask", "vidcom2_compute_retention_mask"),
          "Qwen3VLForConditionalGeneration", "_postprocess_video_embeds_evs", "visual_dim"),
    # Qwen2.5-VL and the families built on it (EXAONE 4.5, OpenCUA, ...).
    Route("vllm.model_executor.models.qwen2_5_vl", *_EVS,
          "Qwen2_5_VLForConditionalGeneration", "_postprocess_video_embeds_evs"),
    # Nemotron-Nano-VL-V2: its processor sizes the prompt, its model file computes the mask.
    Route("vllm.model_executor.models.nano_nemotron_vl", *_EVS, "NemotronH_Nano_VL_V2", "_process_video_input"),
    Route("vllm.transformers_utils.processors.nano_nemotron_vl", _EVS[0], ()),
)

_MAIN_CHANNELS: contextvars.ContextVar[int | None] = contextvars.ContextVar("vcast_main_channels", default=None)
_RECORD_COUNTER = itertools.count()


def _count_fn(settings: Settings):
    def count_fn(tokens_per_frame: int, num_frames: int, q: float) -> int:
        return compute_retained_tokens_count(tokens_per_frame, num_frames, q, method=settings.method,
                                             **settings.options)
    return count_fn


def _mask_fn(settings: Settings, route: Route):
    def mask_fn(video_embeds: torch.Tensor, video_size_thw, spatial_merge_size: int, q: float) -> torch.Tensor:
        channels = _MAIN_CHANNELS.get()
        mask = compute_retention_mask(video_embeds, video_size_thw, spatial_merge_size, q, method=settings.method,
                                      channels=channels, **settings.options)
        if settings.record:
            record(settings, route, video_embeds, video_size_thw, spatial_merge_size, q, channels, mask)
        return mask
    return mask_fn


def record(settings: Settings, route: Route, video_embeds: torch.Tensor, video_size_thw, spatial_merge_size: int,
           q: float, channels: int | None, mask: torch.Tensor) -> str:
    """Save one mask call under ``settings.record`` (``<pid>-<n>.pt``); returns the file path.

    The file holds a dict: ``video_embeds`` (as vLLM passed them, on CPU), ``video_size_thw``,
    ``spatial_merge_size``, ``q``, ``channels`` (the scored width, None for all), ``mask``,
    ``method``, ``options`` and ``module`` (the route).
    """
    os.makedirs(settings.record, exist_ok=True)
    size = video_size_thw.tolist() if isinstance(video_size_thw, torch.Tensor) else list(video_size_thw)
    path = os.path.join(settings.record, f"{os.getpid()}-{next(_RECORD_COUNTER):05d}.pt")
    torch.save({"video_embeds": video_embeds.detach().cpu(), "video_size_thw": [int(v) for v in size],
                "spatial_merge_size": int(spatial_merge_size), "q": float(q), "channels": channels,
                "mask": mask.detach().cpu(), "method": settings.method, "options": dict(settings.options),
                "module": route.module}, path)
    return path


def _scoped_channels(attr: str):
    def make(original):
        def caller(self, *args: Any, **kwargs: Any) -> Any:
            width = getattr(self, attr, None)
            if not isinstance(width, int):
                raise UnsupportedModelError(
                    f"{type(self).__name__} has no {attr}, so vcast cannot tell which of the channels vLLM hands "
                    f"to the mask are the LLM's embedding; unset {ENV_METHOD} to use vLLM's own pruning")
            token = _MAIN_CHANNELS.set(width)
            try:
                return original(self, *args, **kwargs)
            finally:
                _MAIN_CHANNELS.reset(token)
        return caller
    return make


def route(patches: Patches, settings: Settings) -> None:
    """Rebind every route's count and mask names to ``settings.method`` (see :data:`ROUTES`)."""
    count_fn = _count_fn(settings)
    for r in ROUTES:
        module = load(r.module)
        for name in r.count_names:
            patches.replace(module, name, count_fn)
        mask_fn = _mask_fn(settings, r)
        for name in r.mask_names:
            patches.replace(module, name, mask_fn)
        if r.main_channels:
            patches.wrap(load(r.module, r.model_class), r.mask_caller, _scoped_channels(r.main_channels))


def routed_by(model_cls: type) -> Route | None:
    """The route that handles ``model_cls``'s video pruning, or None.

    A model is routed when it is (or derives from) a route's model class and inherits the method
    that calls the mask unchanged.
    """
    for r in ROUTES:
        if r.model_class is None:
            continue
        owner = load(r.module, r.model_class)
        if isinstance(model_cls, type) and issubclass(model_cls, owner) and \
                getattr(model_cls, r.mask_caller) is getattr(owner, r.mask_caller):
            return r
    return None


def check_engine_config(settings: Settings, model_config) -> None:
    """Refuse a model or pruning setup the vcast method cannot serve (front end, engine configuration).

    Raises:
        ConfigError: ``--video-pruning-method`` names another method than the default.
        UnsupportedModelError: the model prunes video with code vcast does not route.
    """
    mm = model_config.multimodal_config
    if mm is None or not mm.is_multimodal_pruning_enabled():
        logger.warning("vcast: %s=%s, but video pruning is off for this model: pass --video-pruning-rate q "
                       "(0 < q < 1, retain_ratio = 1 - q) to prune", ENV_METHOD, settings.method)
        return
    method, q = mm.get_video_pruning_spec()
    if method != "evs":
        raise ConfigError(f"{ENV_METHOD}={settings.method} replaces vLLM's pruning method, but "
                          f"--video-pruning-method {method} asks for another one: leave it at its default "
                          f"(evs), or unset {ENV_METHOD} to run vLLM's {method}")
    registry = load("vllm.model_executor.models", "ModelRegistry")
    model_cls, arch = registry.resolve_model_cls(model_config.architectures, model_config=model_config)
    if routed_by(model_cls) is None:
        raise UnsupportedModelError(
            f"{ENV_METHOD}={settings.method}: {arch} prunes video with code vcast does not route "
            f"(routed: {', '.join(r.model_class for r in ROUTES if r.model_class)} and the families built "
            f"on them); unset {ENV_METHOD} to use vLLM's own pruning")
    logger.info("vcast: %s prunes video with vcast method %r at q=%s (retain_ratio=%s), options %s",
                arch, settings.method, q, round(1.0 - q, 6), settings.options)


def _check_at_engine_config(settings: Settings):
    def make(original):
        def set_defaults(self, model_config, *args: Any, **kwargs: Any) -> Any:
            check_engine_config(settings, model_config)
            return original(self, model_config, *args, **kwargs)
        return set_defaults
    return make


def activate(settings: Settings, version: str | None = None) -> tuple[Patches, VllmRelease]:
    """Apply the plugin to the imported vLLM; returns the patches (``.remove()`` undoes them) and release.

    Args:
        settings: what to apply (normally :meth:`Settings.from_env`).
        version: the vLLM version to assume (default: ``vllm.__version__``).

    Raises:
        UnsupportedVllmError: unknown release, or a seam missing from this vLLM (nothing is left applied).
    """
    if version is None:
        import vllm

        version = vllm.__version__
    release = release_for(version, settings.allow_untested)
    patches = Patches()
    try:
        apply_workarounds(patches, release.defects)
        if settings.method is not None:
            route(patches, settings)
            patches.wrap(load("vllm.engine.arg_utils", "EngineArgs"),
                         "_set_default_chunked_prefill_and_prefix_caching_args", _check_at_engine_config(settings))
    except BaseException:
        patches.remove()
        raise
    return patches, release


_ACTIVE: dict[str, Any] = {}


def register() -> None:
    """The ``vllm.general_plugins`` entry point: apply :func:`activate` once per process if asked."""
    settings = Settings.from_env()
    if not settings.active or _ACTIVE:
        return
    patches, release = activate(settings)
    _ACTIVE.update(settings=settings, patches=patches, release=release)
    what = f"vcast method {settings.method!r}" if settings.method else "vLLM's own pruning method"
    logger.info("vcast plugin (pid %d): vLLM %s (%s), %s; workarounds %s", os.getpid(), release.version,
                release.checked, what, list(release.defects) or "none")
