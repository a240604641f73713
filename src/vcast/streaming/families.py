"""What a model family contributes to a stream: encoding frames, the prompt text around each frame,
and the position ids every token would have had in the whole, unpruned video.

A family never sees the LLM or the cache (that is :mod:`vcast.streaming.session`); it answers three
questions with the model's own processor and vision tower:

- :meth:`StreamFamily.encode`: post-merger tokens ``[P, N, D]`` of ``P`` LLM frames (plus per-token
  extras that travel with each kept token, e.g. Qwen3-VL's deepstack features);
- :meth:`StreamFamily.frame_run`: the ids and positions of one committed frame's run (its kept
  tokens, and the text the processor writes around the frame, e.g. Qwen3-VL's ``<t seconds>``);
- :meth:`StreamFamily.close_video`: what follows the last frame when a question arrives (LLaVA's
  newline token) and where the question's text positions start.

Positions follow transformers' ``get_rope_index`` for the same prompt (tested against it through
the logits): Qwen3-VL numbers each temporal patch as its own ``1 x h x w`` grid after its timestamp
text; Qwen2.5-VL numbers the whole video as one grid whose temporal id of patch ``i`` is
``floor(seconds since the first frame * tokens_per_second)`` (what ``second_per_grid_ts`` gives for a
constant frame rate), Qwen2-VL uses ``i``; the text after a Qwen video starts ``max(h, w)`` after the
video's start position. LLaVA-OneVision is 1-D: token ``n`` of frame ``t`` sits at
``video_start + t * N + n``, the newline after the last frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from vcast.errors import InputError, UnsupportedModelError


@dataclass
class Encoded:
    """``P`` encoded LLM frames.

    Attributes:
        features: ``Tensor[P, N, D]``, post-merger tokens in raster order (what the method scores).
        extras: per-token tensors ``[P, N, D']`` gathered with the kept tokens (deepstack levels).
    """

    features: torch.Tensor
    extras: list[torch.Tensor]


@dataclass(frozen=True)
class Cursor:
    """Where the unpruned prompt stands.

    Attributes:
        video_start: position id of the video's first token (after the prompt's prefix).
        next: the next unpruned position (Qwen3-VL: after the last committed frame's run).
        frames: LLM frames committed in the video so far.
        first_time: timestamp (s) of the video's first raw frame, None before the first frame.
    """

    video_start: int
    next: int
    frames: int = 0
    first_time: float | None = None


@dataclass
class Run:
    """One committed frame's tokens in prompt order.

    Attributes:
        ids: ``LongTensor[q]``, token ids (the video placeholder for video tokens).
        positions: ``LongTensor[R, q]``, position ids (R = 3 for MRoPE, 1 for 1-D RoPE).
        video: ``BoolTensor[q]``, True on the frame's video tokens (in ``grid_index`` order).
    """

    ids: torch.Tensor
    positions: torch.Tensor
    video: torch.Tensor


def _text(ids: list[int], start: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.tensor(ids, dtype=torch.long)
    return t, (torch.arange(len(ids)) + start).expand(rows, -1)


class StreamFamily:
    """Base class; see the module docstring. Subclasses set the class attributes."""

    model_types: tuple[str, ...] = ()
    temporal_patch = 1  # raw frames per LLM frame
    position_rows = 1  # 3 for MRoPE

    def __init__(self, model, processor, config) -> None:
        from vcast.models import resolve_adapter

        self.model, self.processor = model, processor
        # The pruning adapter of the family (never attached) knows its model: inner module, token ids, grids.
        self.adapter = resolve_adapter(model, config)(model, config)
        self.inner = self.adapter.hook_module
        if getattr(processor, "tokenizer", None) is None or getattr(processor, "video_processor", None) is None:
            raise InputError(f"{type(processor).__name__} has no tokenizer or video processor; pass the model's "
                             "AutoProcessor")
        self.tokenizer = processor.tokenizer
        self.video_token = getattr(processor, "video_token", None)
        if not self.video_token:
            raise InputError(f"{type(processor).__name__} names no video token (processor.video_token)")
        self.video_token_id = self.adapter.video_token_id
        self.grid: tuple[int, int] | None = None  # (h, w) of the LLM tokens of one frame

    @property
    def tokens_per_frame(self) -> int:
        h, w = self.grid
        return h * w

    @property
    def frame_overhead(self) -> int:
        """Text tokens the prompt writes around one frame's video tokens (0 unless the family has some)."""
        return 0

    def tokenize(self, text: str, first: bool = False) -> list[int]:
        """Token ids of ``text`` (special tokens of the start of a sequence only when ``first``)."""
        return list(self.tokenizer(text, add_special_tokens=first)["input_ids"])

    def encode(self, frames: np.ndarray) -> Encoded:
        """Encode ``frames uint8[P * temporal_patch, H, W, 3]`` into ``P`` LLM frames."""
        raise NotImplementedError

    def frame_run(self, cursor: Cursor, times: tuple[float, float], grid_index: torch.Tensor) -> tuple[Run, Cursor]:
        """The run of the next committed frame (first/last raw frame times ``times``) keeping the
        tokens ``grid_index`` (sorted indices into the frame's ``N``), and the cursor after it."""
        raise NotImplementedError

    def close_video(self, cursor: Cursor) -> tuple[Run | None, torch.Tensor | None, int]:
        """``(run, features, text_start)``: what follows the last frame (with its features ``[k, D]``),
        or ``(None, None, start)``; ``text_start`` is the position of the text after the video."""
        return None, None, cursor.next

    def mm_outputs(self, kept: torch.Tensor, extras: list[torch.Tensor]):
        """The ``mm_encoder_outputs["video"]`` object for kept features ``[K, D]`` (and their extras)."""
        raise NotImplementedError


# ----- Qwen-VL ------------------------------------------------------------------------------------

def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic, antialiased resize of ``uint8[T, H, W, 3]`` (what transformers' torchvision backend does)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


class QwenFamily(StreamFamily):
    """Shared Qwen-VL encoding: the processor's video pipeline and the model's vision tower."""

    position_rows = 3

    def __init__(self, model, processor, config) -> None:
        super().__init__(model, processor, config)
        vision = self.inner.config.vision_config
        self.merge = self.adapter.merge
        self.patch = int(vision.patch_size)
        self.temporal_patch = int(getattr(vision, "temporal_patch_size", 2))
        self.frame_size: tuple[int, int] | None = None  # what the processor resizes every frame to
        self._output_type = None

    def _pixels(self, frames: np.ndarray, **kwargs):
        out = self.processor.video_processor(videos=[frames], do_sample_frames=False, return_tensors="pt", **kwargs)
        return out["pixel_values_videos"], out["video_grid_thw"]

    def encode(self, frames: np.ndarray) -> Encoded:
        if self.frame_size is None:
            # The processor's size for a one-patch video: independent of how the stream is chunked.
            _, grid = self._pixels(frames[: self.temporal_patch])
            self.frame_size = (int(grid[0, 1]) * self.patch, int(grid[0, 2]) * self.patch)
            self.grid = (int(grid[0, 1]) // self.merge, int(grid[0, 2]) // self.merge)
        if tuple(frames.shape[1:3]) == self.frame_size:
            pixels, grid = self._pixels(frames)
        else:  # pin the size: the processor's own choice may depend on the chunk's frame count
            pixels, grid = self._pixels(resize_frames(frames, *self.frame_size), do_resize=False)
        device = next(self.model.parameters()).device
        enc = self.inner.get_video_features(pixels.to(device), grid.to(device), return_dict=True)
        self._output_type = type(enc)
        p, n = int(grid[0, 0]), self.tokens_per_frame
        features = enc.pooler_output[0].reshape(p, n, -1)
        deepstack = getattr(enc, "deepstack_features", None) or []
        return Encoded(features, [level[0].reshape(p, n, -1) for level in deepstack])

    def _video_positions(self, start_t: torch.Tensor | int, start_hw: int, grid_index: torch.Tensor) -> torch.Tensor:
        w = self.grid[1]
        t = torch.as_tensor(start_t).expand(grid_index.shape[0])
        return torch.stack([t, start_hw + grid_index // w, start_hw + grid_index % w])

    def mm_outputs(self, kept: torch.Tensor, extras: list[torch.Tensor]):
        if extras:
            return self._output_type(pooler_output=(kept,), deepstack_features=[(e,) for e in extras])
        return self._output_type(pooler_output=(kept,))


class Qwen3Family(QwenFamily):
    """Qwen3-VL (dense, MoE): ``<t seconds><|vision_start|> tokens <|vision_end|>`` per temporal patch,
    ``t`` the mean time of the patch's first and last frame, printed with one decimal."""

    model_types = ("qwen3_vl", "qwen3_vl_moe")

    def __init__(self, model, processor, config) -> None:
        super().__init__(model, processor, config)
        self.vision_start = getattr(processor, "vision_start_token", "<|vision_start|>")
        self.vision_end_id = self.tokenize(getattr(processor, "vision_end_token", "<|vision_end|>"))

    @property
    def frame_overhead(self) -> int:
        return len(self.tokenize(f"<10.0 seconds>{self.vision_start}")) + len(self.vision_end_id)

    def frame_run(self, cursor, times, grid_index):
        start = cursor.next
        before = self.tokenize(f"<{(times[0] + times[1]) / 2:.1f} seconds>{self.vision_start}")
        st = start + len(before)
        end = st + max(self.grid)
        ids_b, pos_b = _text(before, start, 3)
        ids_a, pos_a = _text(self.vision_end_id, end, 3)
        video = self._video_positions(st, st, grid_index)
        new = replace(cursor, next=end + len(self.vision_end_id), frames=cursor.frames + 1)
        k = grid_index.shape[0]
        ids = torch.cat([ids_b, torch.full((k,), self.video_token_id), ids_a])
        mask = torch.cat([torch.zeros(len(before), dtype=torch.bool), torch.ones(k, dtype=torch.bool),
                          torch.zeros(len(self.vision_end_id), dtype=torch.bool)])
        return Run(ids, torch.cat([pos_b, video, pos_a], dim=1), mask), new


class Qwen2Family(QwenFamily):
    """Qwen2.5-VL and Qwen2-VL: one ``<|vision_start|> ... <|vision_end|>`` run for the whole video."""

    model_types = ("qwen2_5_vl", "qwen2_vl")

    def __init__(self, model, processor, config) -> None:
        super().__init__(model, processor, config)
        self.tokens_per_second = getattr(self.inner.config.vision_config, "tokens_per_second", None)

    def temporal_id(self, cursor: Cursor, times: tuple[float, float]) -> int:
        """Temporal position offset of the next patch: seconds since the video's first frame times
        ``tokens_per_second`` (Qwen2.5-VL), or the patch index (Qwen2-VL)."""
        if self.tokens_per_second is None:
            return cursor.frames
        return math.floor((times[0] - cursor.first_time) * self.tokens_per_second + 1e-6)

    def frame_run(self, cursor, times, grid_index):
        st = cursor.video_start
        video = self._video_positions(st + self.temporal_id(cursor, times), st, grid_index)
        k = grid_index.shape[0]
        run = Run(torch.full((k,), self.video_token_id), video, torch.ones(k, dtype=torch.bool))
        return run, replace(cursor, frames=cursor.frames + 1)

    def close_video(self, cursor):
        return None, None, cursor.video_start + max(self.grid)


# ----- LLaVA-OneVision ------------------------------------------------------------------------------

class LlavaOnevisionFamily(StreamFamily):
    """LLaVA-OneVision / LLaVA-Video: SigLIP per frame, 2x pooling, one newline after the video."""

    model_types = ("llava_onevision",)

    def __init__(self, model, processor, config) -> None:
        super().__init__(model, processor, config)
        self.grid = self.adapter.grid  # apply_pooling's output grid
        self._output_type = None

    def encode(self, frames: np.ndarray) -> Encoded:
        pixels = self.processor.video_processor(videos=[frames], return_tensors="pt")["pixel_values_videos"]
        device = next(self.model.parameters()).device
        enc = self.inner.get_video_features(pixels.to(device), return_dict=True)
        self._output_type = type(enc)
        p, n = frames.shape[0], self.tokens_per_frame
        pooled = enc.pooler_output[0]
        if pooled.shape[0] != p * n + 1:
            raise UnsupportedModelError(f"LLaVA-OneVision video features have {pooled.shape[0]} tokens for {p} frames; "
                                        f"vcast streams expect {p} x {n} grid tokens and one newline")
        return Encoded(pooled[: p * n].reshape(p, n, -1), [])

    def frame_run(self, cursor, times, grid_index):
        k = grid_index.shape[0]
        positions = (cursor.video_start + cursor.frames * self.tokens_per_frame + grid_index)[None]
        run = Run(torch.full((k,), self.video_token_id), positions, torch.ones(k, dtype=torch.bool))
        return run, replace(cursor, frames=cursor.frames + 1)

    def close_video(self, cursor):
        at = cursor.video_start + cursor.frames * self.tokens_per_frame
        run = Run(torch.tensor([self.video_token_id]), torch.tensor([[at]]), torch.ones(1, dtype=torch.bool))
        return run, self.inner.image_newline[None], at + 1

    def mm_outputs(self, kept: torch.Tensor, extras: list[torch.Tensor]):
        return self._output_type(pooler_output=kept[None])


FAMILIES: dict[str, type[StreamFamily]] = {
    t: cls for cls in (Qwen3Family, Qwen2Family, LlavaOnevisionFamily) for t in cls.model_types
}


def resolve_family(model) -> type[StreamFamily]:
    """The stream family of ``model`` (by ``model.config.model_type``)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in FAMILIES:
        raise UnsupportedModelError(f"vcast streams have no support for model_type {model_type!r} "
                                    f"({type(model).__name__}); supported: {sorted(FAMILIES)}")
    return FAMILIES[model_type]
