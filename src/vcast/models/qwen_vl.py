"""The Qwen-VL family adapter: Qwen3-VL (dense and MoE), Qwen2.5-VL, Qwen2-VL in transformers >= 5.20.

The hook sits on the instance's inner ``*VLModel`` (``model.model``), whose forward receives
``input_ids``, ``attention_mask``, ``position_ids``, ``mm_token_type_ids`` and the vision inputs from
both ``model(**inputs)`` and ``model.generate(**inputs)``:

- ``generate()`` pre-encodes the vision inputs through ``model.model.get_video_features`` and pops
  ``video_grid_thw`` from its kwargs, so the adapter overrides ``get_video_features`` on the instance
  to tag each per-video feature tensor with its ``(t, h, w)`` grid (the output is otherwise unchanged).
  It also passes 4-row position ids ``[text; t; h; w]`` computed on the unpruned prompt.
- ``model(**inputs)`` passes pixels and grids; the adapter encodes them (images too, since the model
  refuses pixels together with pre-encoded outputs) and computes the unpruned MRoPE ids with
  ``get_rope_index`` (3 rows, as the model itself would).

The pruned prefill keeps every kept video token's original ``(t, h, w)`` id and every text token's
original id, so decoding continues exactly as after the unpruned prompt. The text row of 4-row ids
is renumbered contiguously (0..L'-1 over real tokens; decode steps shifted by the dropped count), so
transformers never mistakes the pruned sequence for packed sequences. ``model.model.rope_deltas`` is
set for the pruned layout, so manual decode loops that omit position ids also stay correct.

Decode steps (5.20-5.25 alike): ``generate()`` passes the 4-row ids it continued with ``last + 1``
from the unpruned prompt; the adapter shifts only the text row by the row's dropped count (the
``t, h, w`` rows already continue the unpruned MRoPE ids, as they should). 5.24 renamed the cache
argument (see :mod:`vcast.models.base`); nothing Qwen-specific that the adapter reads changed.
Qwen3-VL's deepstack features are gathered with each video's ``keep_index`` (for merging methods too:
the merged tokens replace the main features, the deepstack taps are those of the kept positions).
"""

from __future__ import annotations

import functools

import torch

from vcast.config import MethodConfig
from vcast.core.selection import Selection
from vcast.errors import ConfigError, InputError, UnsupportedModelError
from vcast.models.base import DecodeState, ModelAdapter, RowPlan, VideoBatch, register_adapter

GRID_ATTR = "_vcast_grid_thw"


class QwenVLAdapter(ModelAdapter):
    """Shared Qwen-VL logic (MRoPE positions, encoder outputs with per-video tuples)."""

    @classmethod
    def check_config(cls, config: MethodConfig) -> None:
        if config.positions != "original":
            raise ConfigError(f"positions={config.positions!r} is for 1-D RoPE models; Qwen-VL models use MRoPE "
                              "(t, h, w) ids, which vcast always preserves: use positions='original'")
        if config.prune_at != "llm":
            raise ConfigError(f"prune_at={config.prune_at!r} is not supported yet for {'/'.join(cls.model_types)}; "
                              "use prune_at='llm'")

    def __init__(self, model, config: MethodConfig) -> None:
        super().__init__(model, config)
        inner = getattr(model, "model", None)
        if inner is None or not hasattr(inner, "get_rope_index"):
            inner = model
        needed = ("get_rope_index", "get_video_features", "get_image_features", "visual", "language_model")
        missing = [n for n in needed if not hasattr(inner, n)]
        if missing:
            raise UnsupportedModelError(f"{type(model).__name__} (model_type {model.config.model_type!r}) lacks "
                                        f"{missing}; vcast supports the transformers >= 5.20 Qwen-VL classes")
        self.hook_module = inner
        self.merge = int(inner.config.vision_config.spatial_merge_size)
        self._vanilla_get_video_features = inner.get_video_features

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.video_token_id)

    # ----- the encoder step (overridable: early pruning replaces it) ------------------------------
    def encode_videos(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor, **kwargs):
        """The encoder step: run the vision tower on all videos.

        Returns the model's ``get_video_features`` output: a ``ModelOutput`` whose ``pooler_output`` is a
        tuple of per-video ``[T*N, D]`` tensors in raster order and, for Qwen3-VL, ``deepstack_features``
        a list over levels of such tuples. An override that prunes inside the encoder returns only the
        kept tokens there (``[K, D]`` per video, deepstack likewise) and sets ``vcast_selections`` (one
        :class:`~vcast.core.Selection` per video) on the output; the LLM side then uses those selections.
        """
        return self._vanilla_get_video_features(pixel_values_videos, video_grid_thw, **kwargs)

    def overrides(self) -> dict:
        vanilla = self._vanilla_get_video_features

        @functools.wraps(vanilla)
        def get_video_features(pixel_values_videos, video_grid_thw=None, **kwargs):
            out = self.encode_videos(pixel_values_videos, video_grid_thw, **kwargs)
            pooled = out.pooler_output if hasattr(out, "pooler_output") else out[1]
            if video_grid_thw is not None and isinstance(pooled, (tuple, list)):
                for feat, grid in zip(pooled, video_grid_thw.tolist()):
                    setattr(feat, GRID_ATTR, tuple(int(g) for g in grid))
            return out

        return {"get_video_features": get_video_features}

    # ----- prefill ------------------------------------------------------------------------------
    def collect_videos(self, kwargs: dict) -> tuple[dict, VideoBatch | None]:
        mm = dict(kwargs.get("mm_encoder_outputs") or {})
        enc, pixels = mm.get("video"), kwargs.get("pixel_values_videos")
        if enc is None and pixels is None:
            return kwargs, None
        if kwargs.get("input_ids") is None:
            raise InputError("vcast needs input_ids to locate the video tokens; pass input_ids, not inputs_embeds")
        inner, grid = self.hook_module, kwargs.get("video_grid_thw")
        if enc is None:
            if grid is None:
                raise InputError("pixel_values_videos came without video_grid_thw; pass the processor's output")
            enc = inner.get_video_features(pixels, grid, return_dict=True)
            kwargs["pixel_values_videos"] = None
        if kwargs.get("pixel_values") is not None and mm.get("image") is None:
            mm["image"] = inner.get_image_features(kwargs["pixel_values"], kwargs.get("image_grid_thw"),
                                                   return_dict=True)
            kwargs["pixel_values"] = None
        mm["video"] = enc
        kwargs["mm_encoder_outputs"] = mm
        if kwargs.get("position_ids") is None:
            kwargs["position_ids"] = self.full_position_ids(kwargs)
        preset = getattr(enc, "vcast_selections", None)
        if preset is not None:  # the encoder pruned already: its outputs hold only the kept tokens
            return kwargs, VideoBatch(list(enc.pooler_output), list(preset), payload=enc)
        grids = self._grids(enc, grid)
        features = [f.reshape(t, (h // self.merge) * (w // self.merge), f.shape[-1])
                    for f, (t, h, w) in zip(enc.pooler_output, grids)]
        hw = [(h // self.merge, w // self.merge) for _, h, w in grids]
        return kwargs, VideoBatch(features, None, payload=enc, grids=hw)

    def _grids(self, enc, grid: torch.Tensor | None) -> list[tuple[int, int, int]]:
        pooled = enc.pooler_output
        if not isinstance(pooled, (tuple, list)):
            raise InputError("expected per-video encoder outputs (a tuple); got one tensor")
        if grid is not None and len(grid) == len(pooled):
            return [tuple(int(g) for g in row) for row in grid.tolist()]
        tagged = [getattr(f, GRID_ATTR, None) for f in pooled]
        if any(g is None for g in tagged):
            raise InputError("cannot tell the (t, h, w) grid of the pre-encoded videos: encode them through "
                             "model.get_video_features while vcast is applied, or pass video_grid_thw")
        return tagged

    def full_position_ids(self, kwargs: dict) -> torch.Tensor:
        """``LongTensor[3, B, L]``: the unpruned MRoPE ids, as the model's forward would compute them."""
        if kwargs.get("mm_token_type_ids") is None:
            raise InputError("mm_token_type_ids is missing; pass the processor's full output (it returns them)")
        extra = {k: kwargs[k] for k in ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")
                 if kwargs.get(k) is not None}
        positions, _ = self.hook_module.get_rope_index(
            kwargs["input_ids"], mm_token_type_ids=kwargs["mm_token_type_ids"],
            attention_mask=kwargs.get("attention_mask"), **extra)
        return positions

    def write_pruned(self, kwargs: dict, batch: VideoBatch, selections: list[Selection], plan: RowPlan) -> dict:
        enc = batch.payload
        if batch.selections is None:
            kept = tuple(s.kept_features(f).to(f.dtype) for s, f in zip(selections, batch.features))
        else:  # the encoder already returned only the kept tokens
            kept = tuple(enc.pooler_output)
        new = type(enc)(**dict(enc.items()))
        new.pooler_output = kept
        deepstack = getattr(enc, "deepstack_features", None)
        if deepstack is not None and batch.selections is None:
            new.deepstack_features = [
                tuple(f.index_select(0, s.keep_index.to(f.device)) for f, s in zip(level, selections))
                for level in deepstack
            ]
        kwargs["mm_encoder_outputs"] = {**kwargs["mm_encoder_outputs"], "video": new}
        valid = self.valid_after(kwargs, plan)
        positions = kwargs["position_ids"]
        if positions.shape[0] == 4:  # [text; t; h; w] from generate(): renumber the text row contiguously
            text = (valid.long().cumsum(-1) - 1).masked_fill(~valid, 0).to(positions.device)
            positions = torch.cat([text[None], positions[1:]], dim=0)
            kwargs["position_ids"] = positions
        mrope = positions[-3:].masked_fill(~valid.to(positions.device)[None], torch.iinfo(positions.dtype).min)
        deltas = mrope.amax(dim=(0, 2)) + 1 - valid.sum(1).to(positions.device)
        self.hook_module.rope_deltas = deltas[:, None]
        return kwargs

    def adjust_decode_positions(self, kwargs: dict, state: DecodeState) -> dict:
        positions = kwargs.get("position_ids")
        if isinstance(positions, torch.Tensor) and positions.ndim == 3 and positions.shape[0] == 4:
            text = positions[0] - state.dropped.to(positions.device)[:, None]
            kwargs["position_ids"] = torch.cat([text[None], positions[1:]], dim=0)
        return kwargs


@register_adapter
class Qwen2VLAdapter(QwenVLAdapter):
    """Qwen2-VL and Qwen2.5-VL: one ``<|vision_start|> ... <|vision_end|>`` run per video."""

    model_types = ("qwen2_vl", "qwen2_5_vl")


@register_adapter
class Qwen3VLAdapter(QwenVLAdapter):
    """Qwen3-VL (dense and MoE): one run per temporal patch (timestamps between), deepstack features.

    Early pruning (``prune_at="vision:k"``) subclasses this and replaces :meth:`encode_videos`.
    """

    model_types = ("qwen3_vl", "qwen3_vl_moe")
