"""lmms-eval models that prune with vcast: ``lmms-eval --model vcast_qwen3_vl --model_args ...``.

Installed with ``pip install "vcast[lmms-eval]"``, which registers this module under lmms-eval's
``lmms_eval.models`` entry-point group (no fork, no patching of lmms-eval). It adds:

- ``vcast_<base>`` for each lmms-eval model of a family vcast prunes (:data:`BASES`): lmms-eval's own
  class for that base (chat, or simple with ``--force_simple``), with ``vcast.apply`` on its model.
  Tasks use the base's prompt blocks (``lmms_eval_specific_kwargs`` etc.): ``vcast_qwen3_vl`` gets
  VideoMME's ``qwen3_vl:`` prompt, exactly as ``--model qwen3_vl`` does.
- ``vcast``: the same, with the base read from ``base=`` or from the checkpoint's ``model_type``.

``--model_args`` takes the base's own options (``pretrained``, ``max_num_frames``, ``max_pixels``,
``attn_implementation``, ...) plus:

- ``method``: a registered vcast method (default ``vcast``), or ``none`` for the unpruned model;
- any option of that method's config, e.g. ``retain_ratio=0.25``, ``temperature=0.7``, ``prune_at=vision:2``,
  ``reproduce=authors``;
- ``vcast_stats=PATH``: a JSON-lines file, one line per sample (see :mod:`vcast.integrations.lmms_eval_stats`);
- ``prompts=ID``: take the tasks' prompt blocks of lmms-eval model ``ID`` instead of the base's.

lmms-eval picks a task's prompt block by the ``--model`` string. It makes the task manager before
it builds the model and the tasks after, so the model, while it is built, sets that run's task
manager to read the base's blocks (:func:`adopt_prompt_blocks`); every request is checked against it.

Where lmms-eval 0.7.3's own classes fail on video prompts, these classes work around it, each in one
small piece: :class:`_Qwen3FrameCap` (Qwen3-VL on clips shorter than ``max_num_frames``),
:class:`_LlavaChatProcessor` (chat ``llava_hf``: ``images=[]``, whole-file video decoding) and
:func:`_llava_device_map` (``llava_hf``'s empty ``device_map`` default under transformers 5).

lmms-eval is imported lazily: this module imports without it.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from typing import Any, ClassVar

from vcast.errors import ConfigError

GENERIC_ID = "vcast"
NO_PRUNING = "none"

#: lmms-eval model id -> the ``config.model_type`` values its class loads. An id is offered when
#: lmms-eval has it and vcast has an adapter for one of its model types.
BASES: dict[str, tuple[str, ...]] = {
    "qwen3_vl": ("qwen3_vl", "qwen3_vl_moe"),
    "qwen2_5_vl": ("qwen2_5_vl",),
    "qwen2_vl": ("qwen2_vl",),
    "llava_hf": ("llava_onevision",),
    "qwen3_5": ("qwen3_5", "qwen3_5_moe"),
}
# Not offered, though vcast prunes the family (each would be an lmms-eval class this project cannot run offline):
# lmms-eval 0.7.3's `glm4v` sends every video file to the processor as an image; `gemma4` and `internvl_hf`
# hand video files to transformers to decode (torchcodec and a system FFmpeg); `qwen2_5_omni` loads its
# processor from the hub ("Qwen/Qwen2.5-Omni-7B") whatever `pretrained` says; `videollama3` and `minicpm_v` run
# the checkpoint's remote code, not transformers' classes. lmms-eval has no SmolVLM class.

#: options this wrapper takes for itself (everything else goes to the method config or the base class).
OWN_OPTIONS = ("method", "vcast_stats", "prompts", "base")

_CLASS_NAME = re.compile(r"^VCast(?:_(?P<base>\w+?))?_(?P<kind>simple|chat)$")
_CLASSES: dict[str, type] = {}


def model_id(base: str) -> str:
    """The lmms-eval model id of ``base`` with vcast pruning (``"vcast_" + base``)."""
    return f"{GENERIC_ID}_{base}"


def offered_bases() -> list[str]:
    """The :data:`BASES` whose model types vcast can prune (lmms-eval availability not checked)."""
    from vcast.models import supported_model_types

    supported = set(supported_model_types())
    return [base for base, types in BASES.items() if supported.intersection(types)]


def base_for_model_type(model_type: str) -> str:
    """The lmms-eval base id whose class loads checkpoints of ``model_type``."""
    for base in offered_bases():
        if model_type in BASES[base]:
            return base
    raise ConfigError(f"no lmms-eval base for model_type {model_type!r}; vcast's lmms-eval models serve "
                      f"{ {b: BASES[b] for b in offered_bases()} }. Pass base=<lmms-eval model id> or "
                      "use a checkpoint of one of these types.")


def _class_path(base: str | None, kind: str) -> str:
    return f"{__name__}.VCast{'' if base is None else '_' + base}_{kind}"


def manifests() -> list:
    """The ``lmms_eval.models`` entry point: a ``ModelManifest`` for ``vcast`` and each ``vcast_<base>``."""
    from lmms_eval.models import AVAILABLE_CHAT_TEMPLATE_MODELS, AVAILABLE_SIMPLE_MODELS
    from lmms_eval.models.registry_v2 import ModelManifest

    out = [ModelManifest(model_id=GENERIC_ID, simple_class_path=_class_path(None, "simple"),
                         chat_class_path=_class_path(None, "chat"))]
    for base in offered_bases():
        simple, chat = base in AVAILABLE_SIMPLE_MODELS, base in AVAILABLE_CHAT_TEMPLATE_MODELS
        if simple or chat:
            out.append(ModelManifest(model_id=model_id(base),
                                     simple_class_path=_class_path(base, "simple") if simple else None,
                                     chat_class_path=_class_path(base, "chat") if chat else None))
    return out


def own_model_ids() -> set[str]:
    """Every model id this module may register (whether or not lmms-eval has the base)."""
    return {GENERIC_ID, *(model_id(b) for b in BASES)}


# ----- options -----------------------------------------------------------------------------------

def method_fields(method: str) -> set[str]:
    """Config field names of ``method`` (empty for ``none``)."""
    if method == NO_PRUNING:
        return set()
    from vcast.methods import get_method

    return {f.name for f in dataclasses.fields(get_method(method).config_cls)}


def split_options(method: str, options: dict[str, Any], base_params: set[str] | None = None):
    """``(method config or None, options for the base class)`` from lmms-eval ``--model_args``.

    Options that are fields of ``method``'s config build it (validated now, before any model loads);
    the rest go to the base class. An option of another vcast method, or one that both the method and
    the base class take, raises :class:`~vcast.ConfigError`.
    """
    from vcast.methods import list_methods, make_config

    if not isinstance(method, str) or (method != NO_PRUNING and method not in list_methods()):
        raise ConfigError(f"method must be one of {[*list_methods(), NO_PRUNING]}, got {method!r}")
    mine = method_fields(method)
    clash = sorted(mine & (base_params or set()))
    if clash:
        raise ConfigError(f"option(s) {clash} are taken by both vcast method {method!r} and the lmms-eval class")
    others = set().union(*(method_fields(m) for m in list_methods())) - mine
    misplaced = sorted(k for k in options if k in others and k not in (base_params or set()))
    if misplaced:
        what = "no pruning method" if method == NO_PRUNING else f"method {method!r}"
        raise ConfigError(f"option(s) {misplaced} do not belong to {what}; its options: {sorted(mine)}")
    method_opts = {k: v for k, v in options.items() if k in mine}
    base_opts = {k: v for k, v in options.items() if k not in mine}
    config = None if method == NO_PRUNING else make_config(method, **method_opts)
    return config, base_opts


# ----- prompt blocks -----------------------------------------------------------------------------

_MODEL_SPECIFIC = ("lmms_eval_specific_kwargs", "model_specific_generation_kwargs", "model_specific_target_kwargs")


def adopt_prompt_blocks(prompt_id: str, max_depth: int = 30) -> bool:
    """Make this evaluation's tasks use the prompt blocks of lmms-eval model ``prompt_id``.

    lmms-eval's CLI and ``simple_evaluate`` build a ``TaskManager(model_name=<--model>)`` before the
    model and the tasks after it. Called while the model is built, this finds that task manager in the
    calling frames and, if its model name is one of vcast's ids, sets it to ``prompt_id``. Returns
    whether it did (False: none found, e.g. a model built outside an evaluation, or a task manager the
    caller made with its own model name, which is then left as it is).
    """
    from lmms_eval.tasks import TaskManager

    ours = own_model_ids()
    frame = inspect.currentframe()
    try:
        for _ in range(max_depth):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return False
            for value in list(frame.f_locals.values()):
                if isinstance(value, TaskManager) and value.model_name in ours:
                    value.model_name = prompt_id
                    return True
        return False
    finally:
        del frame


def request_tasks(requests) -> list:
    """The distinct task objects behind ``requests`` (the owners of their bound ``doc_to_*`` methods)."""
    tasks = {}
    for req in requests:
        for arg in req.args:
            owner = getattr(arg, "__self__", None)
            if owner is not None and hasattr(owner, "model_name") and hasattr(owner, "config"):
                tasks[id(owner)] = owner
    return list(tasks.values())


def check_prompt_blocks(requests, prompt_id: str) -> None:
    """Raise if a task of ``requests`` has a block for ``prompt_id`` but was built for another model name."""
    for task in request_tasks(requests):
        if task.model_name == prompt_id:
            continue
        blocks = [getattr(task.config, key, None) for key in _MODEL_SPECIFIC]
        if any(isinstance(b, dict) and prompt_id in b for b in blocks):
            name = getattr(task.config, "task", "?")
            raise ConfigError(
                f"task {name!r} has a {prompt_id!r} prompt block but was built for model name {task.model_name!r}, "
                f"so it would use other prompts than --model {prompt_id}. Run it with --model {model_id(prompt_id)} "
                f"(CLI or simple_evaluate(model=...)), or pass simple_evaluate a TaskManager(model_name={prompt_id!r}).")


# ----- the model classes -------------------------------------------------------------------------

class _LlavaChatProcessor:
    """The processor of lmms-eval's chat ``llava_hf``, with its two video-prompt failures fixed.

    That class calls the processor with ``images=[]`` on video-only prompts (the LLaVA-OneVision image
    processor fails on an empty list: passed as ``None`` here) and with video file paths, which
    transformers would decode whole, with torchcodec (here each path is decoded by the class's own
    ``load_video`` to ``max_frames_num`` uniformly spaced frames, as its simple path does).
    Everything else goes to the processor unchanged.
    """

    def __init__(self, lm, processor) -> None:
        self._lm, self._processor = lm, processor

    def __call__(self, *args, images=None, videos=None, **kwargs):
        if images is not None and len(images) == 0:
            images = None
        if videos is not None:
            videos = [self._lm.load_video(v, self._lm.max_frames_num) if isinstance(v, str) else v for v in videos]
        return self._processor(*args, images=images, videos=videos, **kwargs)

    def __getattr__(self, name: str):
        if name in ("_lm", "_processor"):  # not set yet (copy/pickle protocols): no recursion
            raise AttributeError(name)
        return getattr(self._processor, name)


def _llava_device_map(options: dict) -> None:
    # lmms-eval's llava_hf defaults to device_map="", which transformers 5 rejects; in a single process
    # use the device (several processes keep "", from which the class picks each process's GPU).
    if "device_map" not in options and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        options["device_map"] = options.get("device", "cuda")


class _Qwen3FrameCap:
    """Frame counts lmms-eval's Qwen3-VL class can always read.

    That class asks qwen-vl-utils for ``nframes=max_num_frames``, which raises on a clip with fewer
    frames (the chat class stops the whole evaluation; the simple class caps at the clip's length but
    fails when an odd count rounds up past it). Here it asks for ``min_frames = max_frames =
    max_num_frames`` instead: the same frames wherever the clip has that many, otherwise the largest
    even count it has (as V-CAST's own lmms-eval fork does).
    """

    def _build_video_kwargs(self):
        kwargs = super()._build_video_kwargs()
        if "nframes" in kwargs:
            n = kwargs.pop("nframes")
            kwargs.update(min_frames=n, max_frames=n)
        return kwargs


#: base -> extra mixins of its class (workarounds for lmms-eval wrapper bugs). Qwen3.5's class inherits
#: Qwen3-VL's frame request; with its default ``total_pixels`` it samples by fps and never asks for ``nframes``.
_BASE_MIXINS = {"qwen3_vl": (_Qwen3FrameCap,), "qwen3_5": (_Qwen3FrameCap,)}
#: base -> fix-up of the base options before the class is built (workarounds for lmms-eval defaults).
_BEFORE_INIT = {"llava_hf": _llava_device_map}
#: (base, kind) -> fix-up of the built instance (workarounds for lmms-eval wrapper bugs).
_AFTER_INIT = {("llava_hf", "chat"): lambda lm: setattr(lm, "_image_processor",
                                                        _LlavaChatProcessor(lm, lm._image_processor))}


class VCastModelMixin:
    """Put before one of lmms-eval's model classes: builds it, then prunes its model with vcast.

    Attributes (set on the instance):
        vcast_handle: the :class:`~vcast.PruneHandle` (None with ``method=none``).
        vcast_prompts: the lmms-eval model id whose prompt blocks the tasks use.
        vcast_stats: the :class:`~vcast.integrations.lmms_eval_stats.StatsRecorder`, or None.
    """

    vcast_base: ClassVar[str] = ""
    vcast_kind: ClassVar[str] = ""

    def __init__(self, *, method: str = "vcast", vcast_stats: str | None = None, prompts: str | None = None,
                 base: str | None = None, **options: Any) -> None:
        if base is not None and base != self.vcast_base:
            raise ConfigError(f"{model_id(self.vcast_base)} runs lmms-eval's {self.vcast_base!r}; got base={base!r}")
        params = set(inspect.signature(super().__init__).parameters) - {"kwargs", "args"}
        config, base_options = split_options(method, options, params)
        if (before := _BEFORE_INIT.get(self.vcast_base)) is not None:
            before(base_options)
        super().__init__(**base_options)
        model = self.model
        if config is None:
            self.vcast_handle = None
        else:
            import vcast

            self.vcast_handle = vcast.apply(model, config)
        self.vcast_prompts = prompts or self.vcast_base
        adopt_prompt_blocks(self.vcast_prompts)
        if (after := _AFTER_INIT.get((self.vcast_base, self.vcast_kind))) is not None:
            after(self)
        self.vcast_stats = None
        if vcast_stats:
            from vcast.integrations.lmms_eval_stats import StatsRecorder, rank_path

            self.vcast_stats = StatsRecorder(model, rank_path(vcast_stats, self.rank, self.world_size),
                                             handle=self.vcast_handle, method=method)
            self.task_dict = self.vcast_stats.watch(self.task_dict)

    def generate_until(self, requests):
        check_prompt_blocks(requests, self.vcast_prompts)
        return super().generate_until(requests)


class _AutoBase:
    """``--model vcast``: builds ``vcast_<base>`` for ``base=`` or the checkpoint's model type."""

    vcast_kind: ClassVar[str] = ""

    def __new__(cls, *args, base: str | None = None, **kwargs):
        if args:
            raise ConfigError("pass the vcast lmms-eval model its options by name")
        if base is None:
            pretrained = kwargs.get("pretrained")
            if pretrained is None:
                raise ConfigError("--model vcast needs pretrained=<checkpoint> (or base=<lmms-eval model id>)")
            from transformers import AutoConfig

            base = base_for_model_type(AutoConfig.from_pretrained(pretrained).model_type)
        elif base not in offered_bases():
            raise ConfigError(f"base must be one of {offered_bases()}, got {base!r}")
        from lmms_eval.models import get_model_manifest

        manifest = get_model_manifest(base)
        has = {"chat": manifest.chat_class_path is not None, "simple": manifest.simple_class_path is not None}
        kind = cls.vcast_kind if has[cls.vcast_kind] else next(k for k, ok in has.items() if ok)
        return model_class(base, kind)(**kwargs)


def model_class(base: str | None, kind: str) -> type:
    """The lmms-eval class ``vcast_<base>`` (``base=None``: ``vcast``) of ``kind`` (``"simple"``/``"chat"``)."""
    name = _class_path(base, kind).rsplit(".", 1)[1]
    if name in _CLASSES:
        return _CLASSES[name]
    from lmms_eval.api.model import lmms

    if base is None:
        cls = type(name, (_AutoBase, lmms), {"__module__": __name__, "vcast_kind": kind, "is_simple": kind == "simple",
                                             "__doc__": _AutoBase.__doc__})
    else:
        import importlib

        from lmms_eval.models import get_model_manifest

        if base not in BASES:
            raise ConfigError(f"no vcast lmms-eval model for base {base!r}; bases: {list(BASES)}")
        manifest = get_model_manifest(base)
        path = manifest.chat_class_path if kind == "chat" else manifest.simple_class_path
        if path is None:
            raise ConfigError(f"lmms-eval's {base!r} has no {kind} class")
        module, attr = path.rsplit(".", 1)
        parent = getattr(importlib.import_module(module), attr)
        doc = f"lmms-eval's {base} ({kind}) with vcast pruning; see {__name__}."
        cls = type(name, (VCastModelMixin, *_BASE_MIXINS.get(base, ()), parent), {"__module__": __name__, "vcast_base": base, "vcast_kind": kind,
                                                     "__doc__": doc})
    _CLASSES[name] = cls
    return cls


def __getattr__(name: str):
    m = _CLASS_NAME.match(name)
    if m is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return model_class(m.group("base"), m.group("kind"))
