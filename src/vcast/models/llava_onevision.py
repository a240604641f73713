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

The hook sits on ``model.model`` (``LlavaOnevisionModel``); the shared family layer
(:mod:`vcast.models.family`) wraps ``get_video_features`` on that instance to record each video's frame
count (``generate()`` pre-encodes videos and drops the pixels before the hook sees them) and keeps the
newline tokens (the protected ``extra`` tokens of each video's :class:`~vcast.models.family.VideoShape`).
Images (anyres, with their own newlines) are never touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vcast.errors import InputError
from vcast.models.family import FamilyAdapter, VideoShape, register_family
from vcast.models.positions import ROPE_1D


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


@register_family
class LlavaOnevisionAdapter(FamilyAdapter):
    """Prefill pruning for ``LlavaOnevisionForConditionalGeneration`` (LLaVA-OneVision, LLaVA-Video)."""

    family_name = "LLaVA-OneVision"
    model_types = ("llava_onevision",)
    needed = ("get_video_features", "get_image_features", "image_newline", "language_model")
    runs = "video"
    positions = ROPE_1D
    pooled = "stacked"

    @property
    def grid(self) -> tuple[int, int]:
        """The pooled frame grid (``apply_pooling``: a ``P x P`` patch grid becomes ``ceil(P/2)`` per side)."""
        vision = self.hook_module.config.vision_config
        side = math.ceil((vision.image_size // vision.patch_size) / 2)
        return side, side

    def video_shapes(self, enc, args, kwargs):
        pooled = enc.pooler_output
        if not isinstance(pooled, torch.Tensor) or pooled.ndim != 3:
            raise InputError("expected LLaVA-OneVision video features as one [videos, tokens, D] tensor, got "
                             f"{type(pooled).__name__} {tuple(getattr(pooled, 'shape', ()))}")
        rows, cols = self.grid
        length = pooled.shape[1]
        shape = args.get("pixel_shape")
        if shape is None and kwargs.get("pixel_values_videos") is not None:
            shape = tuple(kwargs["pixel_values_videos"].shape)
        if shape is not None:
            frames = int(shape[1])
        else:  # encoded before vcast was applied: transformers' layout is the only one we can assume
            frames, rest = divmod(length - 1, rows * cols)
            if rest or frames < 1:
                raise InputError(f"cannot tell the frame count of pre-encoded videos with {length} tokens each; "
                                 "encode them through model.get_video_features while vcast is applied")
        layout = VideoTokenLayout.detect(length, frames, rows, cols, device=pooled.device)
        return [VideoShape(frames, rows, cols, extra=length - frames * rows * cols, grid_index=layout.grid_index)
                ] * pooled.shape[0]
