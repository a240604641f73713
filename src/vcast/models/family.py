"""The shared family layer: an adapter whose model family declares only what differs.

Every video family in transformers >= 5.20 runs the same way: the inner ``*Model`` (the hook module) gets
``input_ids`` and the vision inputs; it encodes videos with ``get_video_features`` (``generate()`` calls
that first and passes the result as ``mm_encoder_outputs["video"]``), scatters the output's
``pooler_output`` into the video placeholder positions, computes positions and runs the LLM.
:class:`FamilyAdapter` does all of it once; a family declares (class attributes, all data):

- ``inner_paths``: where the hook module sits (``"model"``, ``"thinker.model"``, ...).
- ``placeholder``: how video tokens are found in ``input_ids``: ``"token"`` (``== config.<video_token>``) or
  ``"mm_type"`` (``mm_token_type_ids == 2``, for families whose video tokens reuse the image id).
- ``runs``: how each video's tokens sit in the prompt, checked on every prefill: ``"video"`` (one run per
  video), ``"frame"`` (one run per frame, per-frame text such as timestamps between runs; or, where a
  :class:`VideoShape` gives ``frame_runs``, the same few runs in every frame, e.g. MiniCPM-V's overview and
  slices) or ``"frames"`` (runs of whole frames, e.g. Qwen-Omni's video chunks interleaved with audio). The
  text between runs is never a video token, so it is always kept; a prompt whose runs do not match raises.
- ``positions``: the :mod:`~vcast.models.positions` scheme (``MROPE`` or ``ROPE_1D``).
- ``side_features``: encoder-output attributes holding per-video, per-token side features that must follow
  the kept tokens (Qwen3-VL's ``deepstack_features``: one tuple of ``[T*N, D]`` per level).
- ``video_args``: ``get_video_features`` arguments recorded on its output (``generate()`` pops them from
  the model kwargs before the hook sees them), read back by :meth:`FamilyAdapter.video_shapes`.
- ``pooled``: the output's ``pooler_output`` format: ``"per_video"`` (a tuple of ``[L_i, D]``) or
  ``"stacked"`` (one ``[V, L, D]`` tensor; the pruned output is ``[1, sum K_i, D]``).

and implements :meth:`FamilyAdapter.video_shapes` (each video's ``T`` and ``(h, w)`` token grid), plus, for
MRoPE families, :meth:`FamilyAdapter.rope_index`. Hooks with a default that a few families override:
:meth:`~FamilyAdapter.video_columns`, :meth:`~FamilyAdapter.split`, :meth:`~FamilyAdapter.rebuild`,
:meth:`~FamilyAdapter.finish`, :meth:`~FamilyAdapter.video_keep_masks`.

:func:`register_family` registers a family for the model types the installed transformers has; for the others
:func:`vcast.apply` raises saying which transformers version brings them (``since``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from vcast.config import MethodConfig
from vcast.core.selection import Selection
from vcast.errors import ConfigError, InputError, UnsupportedModelError
from vcast.methods.grid import takes_grid
from vcast.models.base import (
    DecodeState,
    ModelAdapter,
    RowPlan,
    VideoBatch,
    find_cache,
    note_unavailable,
    register_adapter,
)
from vcast.models.positions import ROPE_1D, PositionScheme

ARGS_ATTR = "_vcast_video_args"
NEEDS_INPUT_IDS = "vcast needs input_ids to locate the video tokens; pass input_ids, not inputs_embeds"
PIXEL_KEYS = ("pixel_values_videos", "pixel_values", "pixel_values_images")


@dataclass(frozen=True)
class VideoShape:
    """One video's placeholders: a ``frames`` x (``rows`` x ``cols``) token grid, plus ``extra`` protected
    tokens that share the placeholder id and have encoder features but are no grid cell (LLaVA-OneVision's
    newline): always kept, never scored.

    Attributes:
        grid_index: ``LongTensor[T*N]``, the positions of the grid tokens within the video's
            ``length`` placeholders, in raster order (None: the grid is the first ``T*N``).
        frame_runs: where a frame is several runs of placeholders with text between them (MiniCPM-V's overview
            and its slices), the run lengths of one frame (summing to N); its N tokens then form no single
            ``rows x cols`` grid (``rows, cols = 1, N``), and methods that need one raise.
    """

    frames: int
    rows: int
    cols: int
    extra: int = 0
    grid_index: torch.Tensor | None = field(default=None, compare=False)
    frame_runs: tuple[int, ...] | None = None

    @property
    def one_grid(self) -> bool:
        """True when each frame's tokens are one ``rows x cols`` grid."""
        return self.frame_runs is None or len(self.frame_runs) == 1

    @property
    def tokens_per_frame(self) -> int:
        return self.rows * self.cols

    @property
    def length(self) -> int:
        return self.frames * self.tokens_per_frame + self.extra

    def is_grid(self, device=None) -> torch.Tensor:
        """``BoolTensor[length]``: True at grid tokens, False at protected ones."""
        mask = torch.zeros(self.length, dtype=torch.bool, device=device)
        if self.grid_index is None:
            mask[: self.frames * self.tokens_per_frame] = True
        else:
            mask[self.grid_index.to(device)] = True
        return mask


@dataclass
class Encoded:
    """What :meth:`FamilyAdapter.write_pruned` needs: the encoder output, its recorded args, the shapes."""

    output: Any
    args: dict
    shapes: list[VideoShape]
    masks: list[torch.Tensor] | None = None


class FamilyAdapter(ModelAdapter):
    """Prefill pruning for a family that declares what differs (see the module docstring)."""

    family_name: ClassVar[str] = ""
    inner_paths: ClassVar[tuple[str, ...]] = ("model",)
    needed: ClassVar[tuple[str, ...]] = ("get_video_features",)
    video_token: ClassVar[str] = "video_token_id"
    placeholder: ClassVar[str] = "token"
    runs: ClassVar[str] = "video"
    positions: ClassVar[PositionScheme] = ROPE_1D
    side_features: ClassVar[tuple[str, ...]] = ()
    video_args: ClassVar[tuple[str, ...]] = ()
    pooled: ClassVar[str] = "per_video"
    since: ClassVar[str] = "5.20"
    runs_hint: ClassVar[str] = ""  # what a frame of several runs is, and how to get frames of one run

    @classmethod
    def describe(cls) -> dict:
        """The family's declarations as data (for docs, streaming and other integrations)."""
        return {"family": cls.family_name, "model_types": list(cls.model_types), "placeholder": cls.placeholder,
                "runs": cls.runs, "positions": cls.positions.kind, "position_options": list(cls.positions.options),
                "side_features": list(cls.side_features), "since": cls.since}

    @classmethod
    def check_config(cls, config: MethodConfig) -> None:
        cls.positions.check(config, cls.family_name)
        if config.prune_at != "llm":
            from vcast.models.qwen3_vl_early import check_early_pruning_supported

            check_early_pruning_supported(cls.model_types[0])  # raises, saying why, where it does not apply
            raise ConfigError(f"{cls.__name__} prunes at the LLM; prune_at={config.prune_at!r} is served by the "
                              "early-pruning adapter")

    def __init__(self, model, config: MethodConfig, processor=None) -> None:
        super().__init__(model, config, processor)
        inner = self.find_inner(model)
        self.hook_module = inner
        self._vanilla_get_video_features = getattr(inner, "get_video_features", None)

    @classmethod
    def find_inner(cls, model):
        """The module whose forward receives ``input_ids`` and the vision inputs: the first of ``inner_paths``
        (``""``: the model itself) that has every attribute in ``needed``."""
        found = []
        for path in cls.inner_paths:
            module = model
            for name in filter(None, path.split(".")):
                module = getattr(module, name, None)
            if module is not None:
                if all(hasattr(module, n) for n in cls.needed):
                    return module
                found.append((path or "the model", [n for n in cls.needed if not hasattr(module, n)]))
        lacks = "; ".join(f"{p} lacks {m}" for p, m in found) or f"it has none of {list(cls.inner_paths)}"
        raise UnsupportedModelError(
            f"{type(model).__name__} (model_type {model.config.model_type!r}): {lacks}. vcast supports the "
            f"{cls.family_name} classes of transformers >= {cls.since}")

    @property
    def video_token_id(self) -> int:
        cfg = self.hook_module.config
        value = getattr(cfg, self.video_token, None)
        if value is None:
            value = getattr(getattr(self.model, "config", None), self.video_token, None)
        return int(value)

    def cache_length(self, kwargs: dict) -> int:
        cache = find_cache(kwargs)
        return 0 if cache is None else int(cache.get_seq_length())

    # ----- the encoder ---------------------------------------------------------------------------
    def encode_videos(self, *args, **kwargs):
        """The encoder step (overridable: early pruning replaces it): the model's ``get_video_features``."""
        return self._vanilla_get_video_features(*args, **kwargs)

    def overrides(self) -> dict:
        vanilla = self._vanilla_get_video_features
        if vanilla is None:
            return {}
        signature = inspect.signature(vanilla)

        @functools.wraps(vanilla)
        def get_video_features(*args, **kwargs):
            out = self.encode_videos(*args, **kwargs)
            bound = signature.bind_partial(*args, **kwargs).arguments
            record = {k: v for k, v in bound.items() if k in self.video_args}
            pixels = next(iter(bound.values()), None)
            record["pixel_shape"] = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else None
            with contextlib.suppress(AttributeError):  # a tuple output (return_dict=False) carries no record
                setattr(out, ARGS_ATTR, record)
            return out

        return {"get_video_features": get_video_features}

    @staticmethod
    def call_encoder(fn, kwargs: dict):
        """Call ``fn`` with the keyword arguments of ``kwargs`` its signature names, as ``generate()`` does."""
        params = inspect.signature(fn).parameters
        args = {k: kwargs[k] for k in params if k != "kwargs" and kwargs.get(k) is not None}
        return fn(**args, return_dict=True)

    def recorded(self, args: dict, kwargs: dict, *names: str) -> list:
        """The encoder-call arguments ``names``, recorded on its output (``args``) or passed to this call.

        Raises:
            InputError: one is missing (videos encoded before vcast was applied, and no grid passed).
        """
        values = [args.get(n, kwargs.get(n)) for n in names]
        if any(v is None for v in values):
            raise InputError(f"cannot tell the frame grid of the pre-encoded {self.family_name} videos: encode them "
                             f"through model.get_video_features while vcast is applied, or pass {' and '.join(names)}")
        return values

    def encoder_output(self, kwargs: dict, mm: dict, modality: str, pixel_key: str):
        """``mm[modality]`` (pre-encoded by ``generate()``), or the encoder run now on the call's pixels (then
        dropped from the call: the model refuses pixels next to pre-encoded outputs); None without either."""
        if mm.get(modality) is None and kwargs.get(pixel_key) is None:
            return None
        if kwargs.get("input_ids") is None:
            raise InputError(NEEDS_INPUT_IDS)
        if mm.get(modality) is None:
            mm[modality] = self.call_encoder(getattr(self.hook_module, f"get_{modality}_features"), kwargs)
            kwargs[pixel_key] = None
        return mm[modality]

    def encode_other_modalities(self, kwargs: dict, mm: dict) -> None:
        """Encode images too when pixels came with the call: the model refuses pixels next to pre-encoded outputs."""
        if kwargs.get("pixel_values") is not None and mm.get("image") is None:
            mm["image"] = self.call_encoder(self.hook_module.get_image_features, kwargs)
            kwargs["pixel_values"] = None

    # ----- prefill -------------------------------------------------------------------------------
    def collect_videos(self, kwargs: dict) -> tuple[dict, VideoBatch | None]:
        mm = dict(kwargs.get("mm_encoder_outputs") or {})
        enc = self.encoder_output(kwargs, mm, "video", "pixel_values_videos")
        if enc is None:
            return kwargs, None
        self.encode_other_modalities(kwargs, mm)
        kwargs["mm_encoder_outputs"] = mm
        kwargs = self.positions.prefill(self, kwargs)
        preset = getattr(enc, "vcast_selections", None)
        if preset is not None:  # the encoder pruned already: its outputs hold only the kept tokens
            return kwargs, VideoBatch(list(enc.pooler_output), list(preset), payload=Encoded(enc, {}, []))
        args = dict(getattr(enc, ARGS_ATTR, None) or {})
        shapes = self.video_shapes(enc, args, kwargs)
        flat = self.split(enc)
        if len(flat) != len(shapes):
            raise InputError(f"the encoder returned {len(flat)} videos but their grids describe {len(shapes)}")
        features = []
        for i, (f, s) in enumerate(zip(flat, shapes)):
            if f.shape[0] != s.length:
                raise InputError(f"video {i} has {f.shape[0]} encoder tokens, but its grid is {s.frames} x "
                                 f"{s.rows}x{s.cols}" + (f" + {s.extra}" if s.extra else "") +
                                 f" = {s.length}; vcast cannot tell its frame grid")
            features.append(self.grid_features(f, s))
        if not all(s.one_grid for s in shapes) and takes_grid(self.config):
            runs = next(s.frame_runs for s in shapes if not s.one_grid)
            raise InputError(f"method {self.config.method!r} needs one rectangular token grid per frame, but these "
                             f"{self.family_name} frames are {len(runs)} runs of {list(runs)} tokens ({self.runs_hint}); "
                             "use a method that needs no grid, or frames that are one run")
        grids = [(s.rows, s.cols) for s in shapes]
        return kwargs, VideoBatch(features, payload=Encoded(enc, args, shapes), grids=grids)

    def video_shapes(self, enc, args: dict, kwargs: dict) -> list[VideoShape]:
        """Per video, its :class:`VideoShape`, from the recorded encoder ``args`` (or the call's ``kwargs``)."""
        raise NotImplementedError

    def split(self, enc) -> list[torch.Tensor]:
        """Per video, its encoder tokens ``[L_i, D]`` in prompt order."""
        pooled = enc.pooler_output
        if isinstance(pooled, torch.Tensor):
            pooled = list(pooled) if pooled.ndim == 3 else [pooled]
        return [x.reshape(-1, x.shape[-1]) for x in pooled]  # transformers 5.20's LLaVA-NeXT-Video: [T, n, D] each

    def grid_features(self, tokens: torch.Tensor, shape: VideoShape) -> torch.Tensor:
        """``[T, N, D]``: the grid tokens of one video's placeholders, raster order."""
        if shape.grid_index is None:  # the grid is a prefix of the run: a view, no copy
            grid = tokens[: shape.frames * shape.tokens_per_frame]
        else:
            grid = tokens.index_select(0, shape.grid_index.to(tokens.device))
        return grid.view(shape.frames, shape.tokens_per_frame, -1)

    def rope_index(self, kwargs: dict) -> torch.Tensor:
        """``LongTensor[3, B, L]``: the unpruned MRoPE ids as the model computes them (MRoPE families)."""
        raise NotImplementedError

    def video_columns(self, kwargs: dict, batch: VideoBatch) -> torch.Tensor:
        """``BoolTensor[B, L]``: the video placeholder tokens of ``input_ids``."""
        if self.placeholder == "mm_type":
            types = kwargs.get("mm_token_type_ids")
            if types is None:
                raise InputError(f"{self.family_name} marks video tokens in mm_token_type_ids; pass the processor's "
                                 "full output (it returns them)")
            return types == 2
        return kwargs["input_ids"] == self.video_token_id

    def check_layout(self, columns: torch.Tensor, batch: VideoBatch) -> None:
        """Raise unless each video's placeholders form the runs this family's processor writes (``runs``)."""
        enc = batch.payload
        if not isinstance(enc, Encoded) or not enc.shapes:
            return
        padded = torch.nn.functional.pad(columns, (1, 1)).flatten().to(torch.int8)
        edges = padded.diff()
        starts, ends = (edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten()
        runs = (ends - starts).tolist()
        i = 0
        for v, shape in enumerate(enc.shapes):
            got, want, lengths = 0, shape.length, []
            while got < want and i < len(runs):
                lengths.append(runs[i])
                got += runs[i]
                i += 1
            if got != want or not self._runs_match(lengths, shape):
                raise InputError(
                    f"video {v}: its {want} video tokens sit in runs of {lengths} in input_ids; {self.family_name}'s "
                    f"processor writes {self._runs_text(shape)}. vcast does not recognise this prompt layout and "
                    "will not guess which tokens are frames: build the prompt with the model's processor")

    def _runs_match(self, lengths: list[int], shape: VideoShape) -> bool:
        n = shape.tokens_per_frame
        if shape.frame_runs is not None:
            return lengths == list(shape.frame_runs) * shape.frames
        if self.runs == "video":
            return len(lengths) == 1
        if self.runs == "frame":
            return lengths == [n] * shape.frames
        return all(length % n == 0 for length in lengths)  # "frames": whole frames per run

    def _runs_text(self, shape: VideoShape) -> str:
        if shape.frame_runs is not None:
            return f"{shape.frames} frames of runs {list(shape.frame_runs)}"
        if self.runs == "video":
            return f"one run of {shape.length}"
        if self.runs == "frame":
            return f"{shape.frames} runs of {shape.tokens_per_frame} (one per frame)"
        return f"runs of whole frames ({shape.tokens_per_frame} tokens each)"

    def video_keep_masks(self, batch: VideoBatch, selections: list[Selection]) -> list[torch.Tensor]:
        """Per video, its placeholders' keep mask: the selection on the grid, protected tokens always kept."""
        enc = batch.payload
        if not isinstance(enc, Encoded) or not enc.shapes:
            return super().video_keep_masks(batch, selections)
        masks = []
        for shape, sel in zip(enc.shapes, selections):
            grid = sel.keep_mask().reshape(-1)
            if shape.extra == 0 and shape.grid_index is None:
                masks.append(grid)
                continue
            mask = ~shape.is_grid(grid.device)
            mask[mask.logical_not().nonzero().flatten()] = grid
            masks.append(mask)
        enc.masks = masks
        return masks

    # ----- after the sequence was pruned ---------------------------------------------------------
    def write_pruned(self, kwargs: dict, batch: VideoBatch, selections: list[Selection], plan: RowPlan) -> dict:
        enc = batch.payload.output
        if batch.selections is None:
            kept = [self.kept_run(tokens, grid, shape, sel, mask) for tokens, grid, shape, sel, mask in
                    zip(self.split(enc), batch.features, batch.payload.shapes, selections, batch.payload.masks)]
            new = self.rebuild(enc, kept, selections, batch)
        else:  # the encoder already returned only the kept tokens
            new = enc
        kwargs["mm_encoder_outputs"] = {**kwargs["mm_encoder_outputs"], "video": new}
        kwargs = self.positions.after_prune(self, kwargs, plan)
        return self.finish(kwargs, plan)

    @staticmethod
    def kept_run(tokens: torch.Tensor, grid: torch.Tensor, shape: VideoShape, sel: Selection,
                 mask: torch.Tensor) -> torch.Tensor:
        """``[K + extra, D]``: one video's kept placeholder features in prompt order (merging methods'
        merged features in the kept grid slots, protected tokens as they were)."""
        kept = sel.kept_features(grid).to(tokens.dtype)
        if shape.extra == 0 and shape.grid_index is None:
            return kept
        mask = mask.to(tokens.device)
        out = tokens[mask].clone()
        out[shape.is_grid(tokens.device)[mask]] = kept
        return out

    def rebuild(self, enc, kept: list[torch.Tensor], selections: list[Selection], batch: VideoBatch):
        """A copy of the encoder output holding only the kept tokens (and the matching side features)."""
        new = type(enc)(**dict(enc.items()))
        new.pooler_output = self.pack(kept)
        for name in self.side_features:
            levels = getattr(enc, name, None)
            if levels is not None:
                setattr(new, name, [tuple(f.index_select(0, s.keep_index.to(f.device)) for f, s in zip(level, selections))
                                    for level in levels])
        return new

    def pack(self, kept: list[torch.Tensor]):
        """The pruned ``pooler_output`` in the family's format."""
        if self.pooled == "stacked":
            return torch.cat(kept)[None]
        return tuple(kept)

    def finish(self, kwargs: dict, plan: RowPlan) -> dict:
        """Family-specific fix-ups of the pruned prefill's kwargs (default: none)."""
        return kwargs

    def adjust_decode_positions(self, kwargs: dict, state: DecodeState) -> dict:
        return self.positions.decode(self, kwargs, state)


def register_family(cls: type[FamilyAdapter]) -> type[FamilyAdapter]:
    """Register ``cls`` for the model types the installed transformers has; for the others,
    :func:`vcast.apply` says which transformers version brings them (``cls.since``)."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    present = tuple(t for t in cls.model_types if t in CONFIG_MAPPING_NAMES)
    for t in cls.model_types:
        if t not in present:
            note_unavailable(t, f"model_type {t!r} ({cls.family_name}) needs transformers >= {cls.since}; the "
                                f"installed transformers {transformers.__version__} does not have it. Upgrade "
                                "transformers (pip install -U transformers)")
    if present:
        if present != cls.model_types:
            cls = type(cls.__name__, (cls,), {"model_types": present, "__module__": cls.__module__,
                                              "__doc__": cls.__doc__})
        register_adapter(cls)
    return cls
