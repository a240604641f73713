"""The model-adapter layer: family-independent prefill pruning for Video LLMs in transformers.

An adapter makes one model *instance* prune its video tokens once, at prefill, before the LLM, so
that a plain ``model.generate(**inputs)`` or ``model(**inputs)`` runs on the pruned sequence and the
KV cache holds only the kept tokens. It installs a forward pre-hook (with kwargs) on one module of
the instance (the "hook module", e.g. ``Qwen3VLModel``) plus optional instance-attribute overrides;
:meth:`ModelAdapter.detach` removes both. Classes are never patched.

What this module does for every family:

- prefill detection (an empty or absent cache) and the hand-off to the pruning method
  (``vcast.methods.get_method(config.method).run(videos, config)``, or selections made by the encoder);
- the sequence keep mask: every non-video column is kept (text, image tokens, padding), video
  columns follow the selections, which are matched to the video tokens in row-major order;
- per-row pruning of ``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``token_type_ids``
  and ``position_ids`` (any leading dims, sequence last), left re-padding rows that keep different
  counts (:class:`RowPlan`);
- decode steps: ``generate()`` keeps its 2-D attention mask at the unpruned length; it is mapped to
  the pruned layout (``[pruned prefill mask, generated columns]``); then the family may adjust the
  decode positions (:meth:`ModelAdapter.adjust_decode_positions`);
- the supported transformers range (:data:`SUPPORTED_TRANSFORMERS`, checked by :func:`resolve_adapter`);
- stats of the last prefill (:attr:`ModelAdapter.stats`).

Family modules subclass :class:`vcast.models.family.FamilyAdapter`, where a family declares only what
differs (placeholder, prompt layout, position scheme, side features) and implements the encoder-output
plumbing once; this module is the layer under it. The adapter contract (what an adapter implements):

- ``model_types``: the ``config.model_type`` values it serves; register it with :func:`register_adapter`.
- ``check_config(config)`` (classmethod): raise :class:`~vcast.errors.ConfigError` for options it does
  not support (e.g. ``positions="compact"`` on an MRoPE model).
- ``__init__(model, config, processor=None)``: find the hook module and store it in ``self.hook_module``;
  raise :class:`~vcast.errors.UnsupportedModelError` if the instance lacks what the adapter needs (or,
  for a family whose prompt cannot be read without its tokenizer, the processor).
- ``video_token_id``: the placeholder id of video tokens in ``input_ids``; or override
  ``video_columns(kwargs, batch)`` (``BoolTensor[B, L]``) where that id alone does not mark them, and
  ``check_layout(columns, batch)`` to refuse prompts whose video runs the family does not recognise.
- ``overrides()``: ``{attribute name: callable}`` set on the hook module instance while attached
  (e.g. a wrapper of ``get_video_features`` that records the grids generate() pops from its kwargs).
- ``collect_videos(kwargs) -> (kwargs, VideoBatch | None)``: at prefill, get each video's
  post-merger features ``[T, N, D]`` (encoding pixels, or reading what generate() pre-encoded), and
  make ``kwargs`` complete for the unpruned sequence (e.g. full position ids). ``None``: no video.
- ``write_pruned(kwargs, batch, selections, plan) -> kwargs``: called after the generic sequence
  tensors were pruned; put the kept features where the model reads them and fix whatever is
  family-specific (e.g. a text-position row, cached rope deltas).
- ``adjust_decode_positions(kwargs, state) -> kwargs`` (optional): decode-step position fix-ups
  (e.g. shift by ``state.dropped`` for ``positions="compact"``; ``generate()`` continues each row's
  unpruned positions with ``last + 1``).
- ``video_keep_masks(batch, selections)`` (optional): per video, the keep mask over its whole run of
  video tokens, for runs holding protected tokens outside the ``T x N`` grid (always kept).

Positions: the generic pruning gathers ``position_ids`` like any sequence tensor, so kept tokens keep
their original ids, with gaps where tokens were dropped. Without an attention mask and a cache,
transformers reads such gaps as packed-sequence boundaries: either renumber the row the mask code
reads (Qwen's text row) or call :meth:`ModelAdapter.ensure_attention_mask` in ``write_pruned``.

How a call is read, and what changed between transformers releases (5.20 to 5.25 checked):

- Prefill or decode step is decided by the KV cache the hook module receives: absent or empty means
  prefill. transformers 5.20-5.23 pass it as ``past_key_values``; 5.24 renamed it to ``cache`` in
  ``generate()`` and in every forward (``past_key_values`` is still accepted, renamed by a decorator
  that runs *after* forward pre-hooks, with a FutureWarning; removal announced for 5.40). vcast 0.1
  read only ``past_key_values``, so on 5.24+ every decode step looked like a text-only prefill: the
  decode state was dropped and the unpruned-length mask and positions reached the model, giving wrong
  tokens for left-padded or position-shifted rows without an error. :func:`find_cache` now reads
  ``cache``, ``past_key_values`` or ``cache_params``, else any argument with ``get_seq_length``; and a
  call whose 2-D mask is wider than its new tokens while no filled cache is found raises
  (:func:`_check_is_prefill`) instead of being taken for a prefill.
- The decode-step inputs are read as passed, not recomputed from one release's internals: the number
  of generated tokens is ``cache.get_seq_length() - pruned prefill length``; the mask is mapped by its
  width (unpruned layout ``length_before + generated + step``, or already pruned ``cached + step``,
  anything else raises); positions are shifted only where the family says so, on the ``position_ids``
  that ``generate()`` passed (it continues each row with ``last + 1`` in every release checked; none of
  them passes ``cache_position`` to these models any more). A manual loop that passes no positions
  gets them from the family (``rope_deltas`` for Qwen, the cache length for LLaVA).
- Nothing else the adapters read changed in 5.20-5.25: ``mm_encoder_outputs`` pre-encoded by
  ``generate()``, the 4-row ``[text; t; h; w]`` Qwen ids, ``model.model.rope_deltas`` and
  ``get_rope_index``. 5.24 also wraps outputs in ``Multimodal*OutputWithPast`` (``out.cache``, with
  ``out.past_key_values`` as a deprecated alias), which vcast does not read.

Video order: the i-th :class:`VideoBatch` feature tensor must own the i-th run of ``T_i * N_i``
video tokens in row-major order of ``input_ids``, with its tokens in raster ``(t, n)`` order.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from vcast.config import MethodConfig
from vcast.core.selection import Selection
from vcast.errors import ConfigError, InputError, UnsupportedModelError
from vcast.methods import get_method
from vcast.methods.grid import run_with_grids

# The transformers releases the adapters are written and tested for; keep equal to pyproject.toml's
# dependency. CI runs the whole suite on this lower bound and on the newest release (.ci/run).
MIN_TRANSFORMERS = "5.20"
SUPPORTED_TRANSFORMERS = f">={MIN_TRANSFORMERS}"
SEQUENCE_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "moe_mm_token_type_ids", "token_type_ids",
                 "position_ids")
CACHE_KEYS = ("cache", "past_key_values", "cache_params")  # 5.24+ name first, then the deprecated ones


def find_cache(kwargs: dict):
    """The KV cache a forward call received, under whichever name the caller used, or None.

    transformers <= 5.23 passes it as ``past_key_values``; 5.24+ passes ``cache`` (and the forwards
    still accept the old name, renamed by a decorator that runs after the pre-hook). A value under
    another name that behaves like a cache (has ``get_seq_length``) is taken too, so a future rename
    is read rather than mistaken for "no cache", which would make every decode step look like a prefill.
    """
    for key in CACHE_KEYS:
        if kwargs.get(key) is not None:
            return kwargs[key]
    for value in kwargs.values():
        if callable(getattr(value, "get_seq_length", None)) and not isinstance(value, torch.Tensor):
            return value
    return None


@dataclass
class VideoBatch:
    """The videos of one prefill call.

    Attributes:
        features: per video ``Tensor[T_i, N_i, D]``, post-merger tokens in raster order (the method's
            input); with preset ``selections``, whatever the family wants to carry (e.g. kept ``[K_i, D]``).
        selections: set when the encoder already selected (early pruning); None runs the method.
        payload: family data carried from :meth:`ModelAdapter.collect_videos` to ``write_pruned``.
        grids: per video the ``(h, w)`` frame grid of its N tokens (``h * w == N``), handed to methods
            that need the spatial layout (e.g. ``pool``); None means square grids.
    """

    features: list[torch.Tensor]
    selections: list[Selection] | None = None
    payload: Any = None
    grids: list[tuple[int, int]] | None = None


@dataclass
class RowPlan:
    """How each row of a ``[B, L]`` sequence maps to the pruned, left-padded ``[B, L']`` layout.

    Attributes:
        index: ``LongTensor[B, L']``, source column of each new column (0 where ``filled`` is False).
        filled: ``BoolTensor[B, L']``, False on the new left-padding slots that have no source.
        dropped: ``LongTensor[B]``, columns removed from each row.
        length_before, length_after: L and L'.
    """

    index: torch.Tensor
    filled: torch.Tensor
    dropped: torch.Tensor
    length_before: int
    length_after: int

    def gather(self, x: torch.Tensor, fill: int | float | bool = 0) -> torch.Tensor:
        """``x[..., B, L] -> [..., B, L']``: kept columns, left-aligned padding set to ``fill``."""
        idx = self.index.to(x.device).expand(*x.shape[:-2], *self.index.shape)
        out = x.gather(-1, idx)
        return out.masked_fill(~self.filled.to(x.device), fill)


def plan_rows(keep: torch.Tensor) -> RowPlan:
    """Plan the pruned layout from ``keep: BoolTensor[B, L]`` (True = column survives).

    Rows keep their columns in order and are left-padded to the longest row. Vectorised over rows;
    one host synchronisation reads the new length.
    """
    if keep.ndim != 2:
        raise InputError(f"keep mask must be [B, L], got shape {tuple(keep.shape)}")
    b, length = keep.shape
    counts = keep.sum(1)
    new_len = int(counts.max())
    offset = new_len - counts
    dest = torch.where(keep, offset[:, None] + keep.cumsum(1) - 1, new_len)  # dropped -> a dump column
    index = torch.zeros(b, new_len + 1, dtype=torch.long, device=keep.device)
    index.scatter_(1, dest, torch.arange(length, device=keep.device).expand(b, length))
    filled = torch.arange(new_len, device=keep.device)[None, :] >= offset[:, None]
    return RowPlan(index[:, :new_len].masked_fill(~filled, 0), filled, length - counts, length, new_len)


def _check_is_prefill(kwargs: dict, cache) -> None:
    """Refuse a call that looks like a decode step although no filled cache was found.

    A prefill's 2-D attention mask is as wide as its new tokens; a decode step's is wider (it also
    covers the cached tokens). A wider mask with no filled cache in sight means the cache came under
    a name :func:`find_cache` does not know: treating the call as a prefill would skip the decode-step
    mapping and give wrong tokens without an error (what transformers 5.24's rename did to vcast 0.1).
    """
    mask = kwargs.get("attention_mask")
    tokens = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
    if not (isinstance(mask, torch.Tensor) and mask.ndim == 2 and isinstance(tokens, torch.Tensor)):
        return
    if tokens.ndim >= 2 and mask.shape[1] > tokens.shape[1]:
        found = "an empty cache" if cache is not None else f"no cache among {list(CACHE_KEYS)}"
        raise InputError(f"vcast got {tokens.shape[1]} new tokens with an attention mask of {mask.shape[1]} "
                         f"columns but {found}: this looks like a decode step whose KV cache vcast cannot "
                         "see (a transformers release that passes it under another name?). vcast supports "
                         f"transformers {SUPPORTED_TRANSFORMERS}; please report this with your version.")


@dataclass
class DecodeState:
    """What decode steps need from the last pruned prefill."""

    batch_size: int
    length_before: int
    length_after: int
    dropped: torch.Tensor  # LongTensor[B]
    mask_after: torch.Tensor | None  # the pruned prefill attention mask [B, L'], None when no padding


_REGISTRY: dict[str, list[type[ModelAdapter]]] = {}
_UNAVAILABLE: dict[str, str] = {}  # model type -> why this environment cannot serve it


def note_unavailable(model_type: str, reason: str) -> None:
    """Remember why ``model_type`` has no adapter here (e.g. the installed transformers lacks it)."""
    _UNAVAILABLE[model_type] = reason


def register_adapter(cls: type[ModelAdapter]) -> type[ModelAdapter]:
    """Register an adapter class for each of its ``model_types`` (later registrations are tried first)."""
    if not cls.model_types:
        raise ValueError(f"{cls.__name__}.model_types is empty")
    for model_type in cls.model_types:
        entries = _REGISTRY.setdefault(model_type, [])
        if cls not in entries:
            entries.append(cls)
    return cls


def check_transformers_version(installed: str | None = None) -> None:
    """Raise :class:`UnsupportedModelError` if transformers (``installed``, default: the imported one)
    is older than the releases the adapters support."""
    from packaging.version import Version

    if installed is None:
        import transformers

        installed = transformers.__version__
    if Version(installed) < Version(MIN_TRANSFORMERS):
        raise UnsupportedModelError(
            f"vcast's model adapters support transformers {SUPPORTED_TRANSFORMERS}; transformers {installed} is "
            f"installed. Upgrade it: pip install 'transformers{SUPPORTED_TRANSFORMERS}'")


def supported_model_types() -> list[str]:
    """The ``config.model_type`` values some adapter serves."""
    return sorted(_REGISTRY)


def resolve_adapter(model: nn.Module, config: MethodConfig) -> type[ModelAdapter]:
    """The adapter class for ``model`` (by ``model.config.model_type``) that accepts ``config``.

    Raises:
        UnsupportedModelError: no adapter for this model type, or transformers older than
            :data:`SUPPORTED_TRANSFORMERS`.
        ConfigError: adapters exist but none supports the config (the family adapter's message, i.e.
            the first-registered one; specialised adapters registered later only decline).
    """
    check_transformers_version()
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    candidates = _REGISTRY.get(model_type or "")
    if not candidates and model_type in _UNAVAILABLE:
        raise UnsupportedModelError(_UNAVAILABLE[model_type])
    if not candidates:
        raise UnsupportedModelError(
            f"vcast has no adapter for model_type {model_type!r} ({type(model).__name__}); "
            f"supported: {supported_model_types()}. Pass a model whose config.model_type is one of these."
        )
    first_error = None
    for cls in reversed(candidates):
        try:
            cls.check_config(config)
            return cls
        except ConfigError as exc:
            first_error = exc
    raise first_error


class ModelAdapter:
    """Base class of model-family adapters; see the module docstring for the contract."""

    model_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: nn.Module, config: MethodConfig, processor: Any = None) -> None:
        self.model = model
        self.config = config
        self.processor = processor
        self.hook_module: nn.Module = model
        self.state: DecodeState | None = None
        self.stats: dict = {}
        self.selections: list[Selection] = []
        self._hook = None
        self._overridden: list[str] = []
        self._param_names: list[str] | None = None

    # ----- family hooks -------------------------------------------------------------------------
    @classmethod
    def check_config(cls, config: MethodConfig) -> None:
        """Raise ConfigError if this adapter cannot run ``config``."""

    @property
    def video_token_id(self) -> int:
        raise NotImplementedError

    @property
    def pad_token_id(self) -> int:
        """Token id written into new padding slots (never a vision placeholder)."""
        cfg = self.model.config
        pad = getattr(getattr(cfg, "text_config", cfg), "pad_token_id", None)
        return 0 if pad is None else int(pad)

    def overrides(self) -> dict[str, Any]:
        return {}

    def collect_videos(self, kwargs: dict) -> tuple[dict, VideoBatch | None]:
        raise NotImplementedError

    def write_pruned(self, kwargs: dict, batch: VideoBatch, selections: list[Selection], plan: RowPlan) -> dict:
        raise NotImplementedError

    def adjust_decode_positions(self, kwargs: dict, state: DecodeState) -> dict:
        return kwargs

    def has_new_videos(self, kwargs: dict) -> bool:
        """True if a non-prefill call carries video inputs (continuing a cache with new videos)."""
        mm = kwargs.get("mm_encoder_outputs") or {}
        return kwargs.get("pixel_values_videos") is not None or mm.get("video") is not None

    # ----- lifecycle ----------------------------------------------------------------------------
    def attach(self) -> None:
        """Install the pre-hook and the instance overrides on ``self.hook_module``."""
        if self._hook is not None:
            return
        module = self.hook_module
        for name, value in self.overrides().items():
            if name in vars(module):
                raise InputError(f"{type(module).__name__}.{name} is already overridden on this instance; "
                                 "remove the other patch first")
            setattr(module, name, value)
            self._overridden.append(name)
        self._param_names = list(inspect.signature(module.forward).parameters)
        self._hook = module.register_forward_pre_hook(self._pre_hook, with_kwargs=True)

    def detach(self) -> None:
        """Remove the hook and the overrides; the instance is vanilla again."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        for name in self._overridden:
            if name in vars(self.hook_module):
                delattr(self.hook_module, name)
        self._overridden = []
        self.state = None

    # ----- the hook -----------------------------------------------------------------------------
    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict):
        if args:  # positional call: name the arguments so the adapter sees one dict
            kwargs = {**dict(zip(self._param_names, args)), **kwargs}
            args = ()
        cache = find_cache(kwargs)
        cached = 0 if cache is None else cache.get_seq_length()
        if cached == 0:
            _check_is_prefill(kwargs, cache)
            return args, self._prefill(dict(kwargs))
        if self.has_new_videos(kwargs):
            raise InputError("vcast prunes videos at prefill; continuing a non-empty cache with new videos is "
                             "not supported. Start generation from an empty cache (or call handle.remove()).")
        if self.state is None:
            return args, kwargs
        return args, self._decode(dict(kwargs), cached)

    def video_columns(self, kwargs: dict, batch: VideoBatch) -> torch.Tensor:
        """``BoolTensor[B, L]``: the video placeholder tokens of the prefill's ``input_ids``."""
        return kwargs["input_ids"] == self.video_token_id

    def check_layout(self, columns: torch.Tensor, batch: VideoBatch) -> None:
        """Raise :class:`InputError` if the video tokens do not sit as the family's processor writes them."""

    def video_keep_masks(self, batch: VideoBatch, selections: list[Selection]) -> list[torch.Tensor]:
        """Per video, ``BoolTensor`` over its run of video tokens in ``input_ids`` (True = kept).

        Default: the run is the ``T*N`` grid (``selection.keep_mask()``). Families whose runs also
        hold tokens outside the grid (e.g. LLaVA-OneVision's newline) override this and keep those.
        """
        return [s.keep_mask().reshape(-1) for s in selections]

    def select(self, features: list[torch.Tensor], grids: list[tuple[int, int]] | None = None) -> list[Selection]:
        """Run the configured method on per-video ``[T, N, D]`` features with their ``(h, w)`` grids."""
        if grids is None:
            return get_method(self.config.method).run(features, self.config)
        return run_with_grids(self.config.method, features, self.config, grids)

    def _prefill(self, kwargs: dict) -> dict:
        kwargs, batch = self.collect_videos(kwargs)
        if batch is None:
            self.state = None
            return kwargs
        input_ids = kwargs.get("input_ids")
        if input_ids is None:
            raise InputError("vcast needs input_ids to locate the video tokens; pass input_ids, not inputs_embeds")
        selections = batch.selections if batch.selections is not None else self.select(batch.features, batch.grids)
        video_cols = self.video_columns(kwargs, batch)
        self.check_layout(video_cols, batch)
        run_masks = self.video_keep_masks(batch, selections)
        expected = sum(int(m.numel()) for m in run_masks)
        found = int(video_cols.sum())
        if found != expected:
            raise InputError(f"the prompt holds {found} video tokens but the videos give {expected}; "
                             "pass the processor's full, untruncated output in one prefill")
        keep = ~video_cols
        if expected:
            keep[video_cols] = torch.cat([m.reshape(-1).to(keep.device) for m in run_masks])
        plan = plan_rows(keep)
        kwargs = self._prune_sequence(kwargs, plan)
        kwargs = self.write_pruned(kwargs, batch, selections, plan)
        self.state = DecodeState(input_ids.shape[0], plan.length_before, plan.length_after,
                                 plan.dropped, kwargs.get("attention_mask"))
        self._record_stats(selections, plan, kwargs, batch.grids)
        return kwargs

    def _prune_sequence(self, kwargs: dict, plan: RowPlan) -> dict:
        b, length = plan.index.shape[0], plan.length_before
        mask = kwargs.get("attention_mask")
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.ndim != 2):
            raise InputError("vcast prunes with a 2-D attention mask; a prepared 4-D mask (static/compiled "
                             "caches) cannot shrink with the sequence. Use the default dynamic cache.")
        for key in SEQUENCE_KEYS:
            x = kwargs.get(key)
            if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[-2:] != (b, length):
                continue
            fill = self.pad_token_id if key == "input_ids" else 0
            kwargs[key] = plan.gather(x, fill)
        if mask is None and not bool(plan.filled.all()):
            kwargs["attention_mask"] = plan.filled.long()
        return kwargs

    @staticmethod
    def ensure_attention_mask(kwargs: dict, plan: RowPlan) -> dict:
        """Give the pruned prefill an explicit 2-D mask. Needed when position ids keep gaps (1-D RoPE,
        ``positions="original"``): without a mask and a cache, transformers reads gaps as packed sequences."""
        if kwargs.get("attention_mask") is None:
            kwargs["attention_mask"] = plan.filled.long()
        return kwargs

    def valid_after(self, kwargs: dict, plan: RowPlan) -> torch.Tensor:
        """``BoolTensor[B, L']``: real (non-padding) tokens of the pruned prefill."""
        mask = kwargs.get("attention_mask")
        return plan.filled if mask is None else mask.bool() & plan.filled.to(mask.device)

    def _decode(self, kwargs: dict, cached: int) -> dict:
        st = self.state
        tokens = kwargs["input_ids"] if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]
        rows, step = tokens.shape[:2]
        if rows != st.batch_size:
            raise InputError(f"decode step has batch {rows}, the pruned prefill had {st.batch_size}")
        generated = cached - st.length_after
        if generated < 0:
            raise InputError(f"the cache holds {cached} tokens, fewer than the pruned prefill ({st.length_after}); "
                             "this cache does not continue the last pruned prefill")
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.ndim == 2:
            if mask.shape[1] == st.length_before + generated + step and st.length_before != st.length_after:
                head = st.mask_after if st.mask_after is not None else mask.new_ones(mask.shape[0], st.length_after)
                kwargs["attention_mask"] = torch.cat([head.to(mask.dtype), mask[:, st.length_before:]], dim=1)
            elif mask.shape[1] != cached + step:
                raise InputError(f"attention_mask has {mask.shape[1]} columns; expected {cached + step} (pruned "
                                 f"layout) or {st.length_before + generated + step} (unpruned layout)")
        elif mask is not None:
            raise InputError("vcast maps 2-D attention masks on decode steps; got a prepared mask (static or "
                             "compiled cache). Use the default dynamic cache.")
        elif st.mask_after is not None:
            new = st.mask_after.new_ones(st.mask_after.shape[0], generated + step)
            kwargs["attention_mask"] = torch.cat([st.mask_after, new], dim=1)
        return self.adjust_decode_positions(kwargs, st)

    def _record_stats(self, selections: list[Selection], plan: RowPlan, kwargs: dict,
                      grids: list[tuple[int, int]] | None = None) -> None:
        self.selections = list(selections)
        videos = [{"method": self.config.method, **s.summary()} for s in selections]
        for video, grid in zip(videos, grids or []):
            video["grid"] = [int(grid[0]), int(grid[1])]
        valid_after = self.valid_after(kwargs, plan).sum(1)
        before_rows = valid_after + plan.dropped.to(valid_after.device)
        self.stats = {
            "method": self.config.method,
            "config": self.config.to_dict(),
            "videos": videos,
            "video_tokens_before": sum(v["tokens_before"] for v in videos),
            "video_tokens_after": sum(v["tokens_kept"] for v in videos),
            "prompt_tokens_before": before_rows.tolist(),
            "prompt_tokens_after": valid_after.tolist(),
            "prefill_length_before": plan.length_before,
            "prefill_length_after": plan.length_after,
        }
