"""The LLaVA-OneVision adapter (``model_type="llava_onevision"``; LLaVA-Video checkpoints that load
through ``LlavaOnevisionForConditionalGeneration`` are the same class and the same code path).

Video features in transformers 5.x (``LlavaOnevisionModel.get_video_features``): SigLIP on every
frame, the projector, ``apply_pooling`` (2x bilinear down: a ``P x P`` patch grid becomes
``ceil(P/2) x ceil(P/2)`` tokens), frames concatenated, then ONE ``image_newline`` token appended.
``pooler_output`` is ``[V, T*n + 1, D]`` and the prompt holds one run of ``T*n + 1`` ``<video>``
tokens per video. The adapter views each run through a :class:`VideoTokenLayout`: the ``T x n``
frame grid goes to the pruning method, and newline tokens are protected (always kept, never
scored). Layouts with a newline after every frame or after every pooled row (the
``mm_newline_position`` options of the LLaVA-NeXT/LLaVA-Video code base, for subclasses that
produce them) are recognised from the run length, so the frame grid stays exact; an unknown
layout raises :class:`~vcast.errors.InputError`.

Positions are 1-D (Qwen2 RoPE). ``positions="original"`` (default): kept tokens keep their original
position ids and the text after the video continues as in the unpruned prompt; a 2-D attention mask
is always passed after pruning, so transformers never reads the position gaps as packed sequences.
``positions="compact"``: ids renumbered over the pruned sequence (each id minus the number of
dropped tokens before it); decode steps shift by the row's dropped count. Decode steps read the
``position_ids`` generate() passes (``last + 1``, in 5.20-5.25 alike); a manual loop that passes none
gets the unpruned continuation from the cache length, the cache being found under either name
(``past_key_values`` up to 5.23, ``cache`` from 5.24: :func:`vcast.models.base.find_cache`).

The hook sits on ``model.model`` (``LlavaOnevisionModel``); ``get_video_features`` is wrapped on
that instance to record each video's frame count (``generate()`` pre-encodes videos and drops the
pixels before the hook sees them). Images (anyres, with their own newlines) are never touched.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from vcast.config import MethodConfig
from vcast.core.selection import Selection
from vcast.errors import InputError, UnsupportedModelError
from vcast.models.base import DecodeState, ModelAdapter, RowPlan, VideoBatch, find_cache, register_adapter

FRAMES_ATTR = "_vcast_num_frames"
_VISION_KEYS = ("vision_feature_layer", "vision_feature_select_strategy")


@dataclass(frozen=True)
class VideoTokenLayout:
    """Where one video's frame-grid tokens and newline tokens sit in its run of ``L`` placeholders.

    Attributes:
        kind: ``"one_token"`` (the ``T*n`` grid tokens, then one newline: transformers' layout),
            ``"no_token"`` (grid only), ``"frame"`` (a newline after each frame) or ``"grid"`` (a
            newline after each pooled row of each frame).
        frames, rows, cols: T and the pooled grid of one frame (``n = rows * cols``).
        length: L, the run length.
        grid_index: ``LongTensor[T*n]``, run positions of the grid tokens in raster ``(t, y, x)``
            order (strictly increasing); every other run position is a protected newline token.
    """

    kind: str
    frames: int
    rows: int
    cols: int
    length: int
    grid_index: torch.Tensor

    @property
    def tokens_per_frame(self) -> int:
        return self.rows * self.cols

    @staticmethod
    def detect(length: int, frames: int, rows: int, cols: int, device=None) -> VideoTokenLayout:
        """The layout with run length ``length`` for a ``frames x rows x cols`` grid.

        Layouts that share a length for a given grid also place their newlines identically (e.g.
        "frame" and "grid" with one row), so the first match is exact.
        """
        n = rows * cols
        strides = {  # kind: (run length, frame stride, row stride)
            "one_token": (frames * n + 1, n, cols),
            "no_token": (frames * n, n, cols),
            "frame": (frames * (n + 1), n + 1, cols),
            "grid": (frames * rows * (cols + 1), rows * (cols + 1), cols + 1),
        }
        for kind, (run, frame_stride, row_stride) in strides.items():
            if run == length:
                t = torch.arange(frames, device=device).view(-1, 1, 1) * frame_stride
                y = torch.arange(rows, device=device).view(1, -1, 1) * row_stride
                x = torch.arange(cols, device=device).view(1, 1, -1)
                return VideoTokenLayout(kind, frames, rows, cols, length, (t + y + x).flatten())
        known = ", ".join(f"{k}: {v[0]}" for k, v in strides.items())
        raise InputError(f"a video of {frames} frames with a {rows}x{cols} pooled grid gave {length} tokens, which "
                         f"matches no known newline layout ({known}); vcast cannot tell its frame grid")

    def keep_masks(self, selections: list[Selection]) -> torch.Tensor:
        """``BoolTensor[V, L]``: kept run positions per video (grid tokens per selection, newlines always)."""
        device = self.grid_index.device
        masks = torch.ones(len(selections), self.length, dtype=torch.bool, device=device)
        masks[:, self.grid_index] = False
        rows = torch.cat([torch.full((s.num_kept,), i, device=device) for i, s in enumerate(selections)])
        cols = self.grid_index[torch.cat([s.keep_index.to(device) for s in selections])]
        masks[rows, cols] = True
        return masks


@dataclass
class _Encoded:
    """What :meth:`LlavaOnevisionAdapter.write_pruned` needs: the encoder output and its layout."""

    output: object  # the ModelOutput of get_video_features; pooler_output [V, L, D]
    layout: VideoTokenLayout
    masks: torch.Tensor | None = None  # BoolTensor[V, L], set by video_keep_masks


@register_adapter
class LlavaOnevisionAdapter(ModelAdapter):
    """Prefill pruning for ``LlavaOnevisionForConditionalGeneration`` (LLaVA-OneVision, LLaVA-Video)."""

    model_types = ("llava_onevision",)

    @classmethod
    def check_config(cls, config: MethodConfig) -> None:
        if config.prune_at != "llm":
            from vcast.models.qwen3_vl_early import check_early_pruning_supported

            check_early_pruning_supported("llava_onevision")

    def __init__(self, model, config: MethodConfig) -> None:
        super().__init__(model, config)
        inner = getattr(model, "model", model)
        needed = ("get_video_features", "get_image_features", "image_newline", "language_model")
        missing = [n for n in needed if not hasattr(inner, n)]
        if missing:
            raise UnsupportedModelError(f"{type(model).__name__} (model_type 'llava_onevision') lacks {missing}; "
                                        "vcast supports transformers' LlavaOnevisionForConditionalGeneration")
        vision = inner.config.vision_config
        side = math.ceil((vision.image_size // vision.patch_size) / 2)  # apply_pooling's output grid
        self.hook_module = inner
        self.grid = (side, side)
        self._vanilla_get_video_features = inner.get_video_features

    @property
    def video_token_id(self) -> int:
        return int(self.model.config.video_token_id)

    def overrides(self) -> dict:
        vanilla = self._vanilla_get_video_features

        @functools.wraps(vanilla)
        def get_video_features(pixel_values_videos, *args, **kwargs):
            out = vanilla(pixel_values_videos, *args, **kwargs)
            pooled = out.pooler_output if hasattr(out, "pooler_output") else out[1]
            setattr(pooled, FRAMES_ATTR, int(pixel_values_videos.shape[1]))
            return out

        return {"get_video_features": get_video_features}

    # ----- prefill ------------------------------------------------------------------------------
    def collect_videos(self, kwargs: dict) -> tuple[dict, VideoBatch | None]:
        mm = dict(kwargs.get("mm_encoder_outputs") or {})
        enc, pixels = mm.get("video"), kwargs.get("pixel_values_videos")
        if enc is None and pixels is None:
            return kwargs, None
        inner = self.hook_module
        vision = {k: kwargs[k] for k in _VISION_KEYS if kwargs.get(k) is not None}
        if enc is None:
            enc = inner.get_video_features(pixels, return_dict=True, **vision)
            kwargs["pixel_values_videos"] = None
        if kwargs.get("pixel_values") is not None and mm.get("image") is None:  # the model refuses pixels + outputs
            mm["image"] = inner.get_image_features(
                kwargs["pixel_values"], kwargs.get("image_sizes"), return_dict=True,
                vision_aspect_ratio=kwargs.get("vision_aspect_ratio"), batch_num_images=kwargs.get("batch_num_images"),
                **vision)
            kwargs["pixel_values"] = None
        mm["video"] = enc
        kwargs["mm_encoder_outputs"] = mm
        if kwargs.get("input_ids") is None:
            raise InputError("vcast needs input_ids to locate the video tokens; pass input_ids, not inputs_embeds")
        b, length = kwargs["input_ids"].shape
        positions = kwargs.get("position_ids")
        if positions is None:  # what the LLM would use for the unpruned prompt
            positions = torch.arange(length, device=kwargs["input_ids"].device)
        if positions.ndim > 2 or positions.shape[-1] != length:
            raise InputError(f"position_ids of shape {tuple(positions.shape)} do not fit input_ids {(b, length)}; "
                             "LLaVA-OneVision takes 1-D position ids [B, L]")
        kwargs["position_ids"] = positions.expand(b, length)
        pooled = enc.pooler_output
        layout = self._layout(pooled)
        if layout.kind in ("one_token", "no_token"):  # the grid is a prefix of the run: a view, no copy
            grid = pooled[:, : layout.frames * layout.tokens_per_frame]
        else:
            grid = pooled.index_select(1, layout.grid_index)
        features = list(grid.view(pooled.shape[0], layout.frames, layout.tokens_per_frame, pooled.shape[-1]))
        grids = [(layout.rows, layout.cols)] * len(features)
        return kwargs, VideoBatch(features, payload=_Encoded(enc, layout), grids=grids)

    def _layout(self, pooled: torch.Tensor) -> VideoTokenLayout:
        if not isinstance(pooled, torch.Tensor) or pooled.ndim != 3:
            raise InputError("expected LLaVA-OneVision video features as one [videos, tokens, D] tensor, got "
                             f"{type(pooled).__name__} {tuple(getattr(pooled, 'shape', ()))}")
        rows, cols = self.grid
        length = pooled.shape[1]
        frames = getattr(pooled, FRAMES_ATTR, None)
        if frames is None:  # encoded before vcast was applied: transformers' layout is the only one we can assume
            frames, rest = divmod(length - 1, rows * cols)
            if rest or frames < 1:
                raise InputError(f"cannot tell the frame count of pre-encoded videos with {length} tokens each; "
                                 "encode them through model.get_video_features while vcast is applied")
        return VideoTokenLayout.detect(length, frames, rows, cols, device=pooled.device)

    def video_keep_masks(self, batch: VideoBatch, selections: list[Selection]) -> list[torch.Tensor]:
        masks = batch.payload.layout.keep_masks(selections)
        batch.payload.masks = masks
        return list(masks)

    def write_pruned(self, kwargs: dict, batch: VideoBatch, selections: list[Selection], plan: RowPlan) -> dict:
        enc, layout, masks = batch.payload.output, batch.payload.layout, batch.payload.masks
        pooled = enc.pooler_output
        kept = pooled[masks.to(pooled.device)]  # [sum K_v + newlines, D], video-major, run order
        if any(s.merged_features is not None for s in selections):  # merging methods replace the kept grid tokens
            is_grid = torch.zeros(layout.length, dtype=torch.bool, device=pooled.device)
            is_grid[layout.grid_index] = True
            slots = is_grid.expand_as(masks)[masks.to(pooled.device)]
            kept[slots] = torch.cat([s.kept_features(f).to(kept.dtype) for s, f in zip(selections, batch.features)])
        new = type(enc)(**dict(enc.items()))
        new.pooler_output = kept[None]  # the model flattens (0, 1): one [1, K, D] block holds every video
        kwargs["mm_encoder_outputs"] = {**kwargs["mm_encoder_outputs"], "video": new}
        if self.config.positions == "compact":
            # new column c of row b holds kept token number c - offset_b, from source column index[b, c]
            new_col = torch.arange(plan.length_after, device=plan.index.device)
            offset = (plan.length_after - (plan.length_before - plan.dropped))[:, None].to(plan.index.device)
            dropped_before = (plan.index - (new_col[None] - offset)).masked_fill(~plan.filled, 0)
            positions = kwargs["position_ids"]
            kwargs["position_ids"] = positions - dropped_before.to(positions.device)
        if kwargs.get("attention_mask") is None:  # position gaps must not read as packed sequences
            kwargs["attention_mask"] = plan.filled.long().to(kwargs["input_ids"].device)
        return kwargs

    def adjust_decode_positions(self, kwargs: dict, state: DecodeState) -> dict:
        positions = kwargs.get("position_ids")
        if positions is None:  # manual loop: what the LLM would use after the unpruned prompt
            ids = kwargs["input_ids"] if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"][..., 0]
            generated = find_cache(kwargs).get_seq_length() - state.length_after
            start = state.length_before + generated
            positions = torch.arange(start, start + ids.shape[1], device=ids.device).expand(ids.shape[0], -1)
        if self.config.positions == "compact":
            positions = positions - state.dropped.to(positions.device)[:, None]
        kwargs["position_ids"] = positions
        return kwargs
