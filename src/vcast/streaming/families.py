"""What a model family contributes to a stream, read from its pruning adapter's declarations.

A stream needs, per family: how to encode a chunk of frames, the prompt text around each frame, and the
position ids every token would have had in the whole, unpruned video. Almost all of it is what the
family layer (:mod:`vcast.models.family`) already declares for offline pruning, so
:class:`StreamFamily` builds on the family's adapter (never attached to the model):

- **encoding**: the processor's video processor, then the adapter's encoder call
  (:meth:`~vcast.models.family.FamilyAdapter.call_encoder` on ``get_video_features``), its
  :meth:`~vcast.models.family.FamilyAdapter.video_shapes` (the ``T x (rows x cols)`` grid),
  :meth:`~vcast.models.family.FamilyAdapter.split` and ``grid_features``: post-merger tokens
  ``[P, N, D]``; the ``side_features`` (Qwen3-VL's deepstack levels) travel with each kept token and
  the protected ``extra`` tokens after the grid (LLaVA-OneVision's newline) close the video;
- **the encoder output for kept tokens**: the adapter's ``pooled`` format (``pack``) and ``side_features``;
- **placeholders**: the adapter's video token id (families with ``placeholder="mm_type"`` name the id
  their processor writes in their :class:`StreamSpec`);
- **positions**, from the adapter's ``positions`` scheme and ``runs`` layout. 1-D: every token of the
  unpruned prompt has the next id, so a frame's run continues where the previous one ended. MRoPE: the
  ids of one frame's run come from the family's own :meth:`~vcast.models.family.FamilyAdapter.rope_index`
  on that run alone (``[its text, a 1 x rows x cols block, its text, one more text token]``), shifted to
  where the run starts: with one run per frame (Qwen3-VL, Qwen3.5, GLM-4.xV) each frame is its own block
  after its timestamp text, and the next run starts where that last text token sits; with one run per
  video (Qwen2.5-VL, Qwen2-VL) every frame sits in the video's one block at the video's start, its
  temporal id raised by :attr:`StreamSpec.temporal`, and the text after the video starts where the
  run's extra text token sits.

What the family layer does not declare is a family's :class:`StreamSpec` (:data:`SPECS`, keyed by the
adapter's ``family_name``): the text its processor writes around each frame (as a function of the frame's
index and times, mirroring the processor's own code), how a one-run-per-video MRoPE family numbers its
frames in time, and video-processor options. Families the layer supports but streams cannot serve have
the reason in :data:`NOT_STREAMED`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from vcast.errors import InputError, UnsupportedModelError

Times = tuple[float, float]  # first and last raw frame time (s) of an LLM frame


@dataclass
class Encoded:
    """``P`` encoded LLM frames.

    Attributes:
        features: ``Tensor[P, N, D]``, post-merger tokens in raster order (what the method scores).
        extras: per-token side features ``[P, N, D']`` gathered with the kept tokens (deepstack levels).
    """

    features: torch.Tensor
    extras: list[torch.Tensor]


@dataclass(frozen=True)
class Cursor:
    """Where the unpruned prompt stands.

    Attributes:
        video_start: position id of the video's first token (after the prompt's prefix).
        next: the next unpruned position (after the last committed frame's run; for one-run-per-video
            MRoPE families, where the text after the video starts).
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


def _no_text(processor, index: int, times: Times) -> tuple[str, str]:
    return "", ""


@dataclass(frozen=True)
class StreamSpec:
    """The streaming-specific part of a family (everything else comes from its adapter).

    Attributes:
        frame_text: ``(processor, frame index, times) -> (before, after)``, the text the processor writes
            before and after frame ``index``'s placeholders (separators between frames included), for a
            frame whose first and last raw frames are at ``times`` seconds.
        temporal: MRoPE families with one run per video: the temporal id offset of frame ``i``,
            ``"index"`` (``i``) or ``"seconds"`` (``floor(seconds since the first frame *
            vision_config.tokens_per_second)``, ``"index"`` when the config has no ``tokens_per_second``).
        token: config attribute of the placeholder id the processor writes, for families whose adapter
            finds video tokens by ``mm_token_type_ids`` (None: the adapter's video token id).
        processor_kwargs: options for the video processor call.
    """

    frame_text: Callable[[object, int, Times], tuple[str, str]] = _no_text
    temporal: str = "index"
    token: str | None = None
    processor_kwargs: dict = field(default_factory=dict)


def _qwen3_text(processor, index, times):
    # Qwen3VLProcessor: "<t seconds><|vision_start|>" + pads + "<|vision_end|>", t the patch's mean frame time
    start = getattr(processor, "vision_start_token", "<|vision_start|>")
    return f"<{(times[0] + times[1]) / 2:.1f} seconds>{start}", getattr(processor, "vision_end_token", "<|vision_end|>")


def _glm_text(processor, index, times):
    # Glm4vProcessor / Glm46VProcessor write each temporal patch with their own replace_frame_token_id
    text = processor.replace_frame_token_id(times[0], num_image_tokens=1)
    before, after = text.split(processor.image_token)
    return before, after


def _gemma4_text(processor, index, times):
    # Gemma4Processor: "MM:SS <start_of_image>" + tokens + "<end_of_image>", frames joined by spaces
    s = times[0]
    return f"{' ' if index else ''}{int(s // 60):02d}:{int(s % 60):02d} {processor.boi_token}", processor.eoi_token


def _video_llama_3_text(processor, index, times):
    # VideoLlama3Processor: "Time {t:.1f}s:" + tokens, frames joined by ","
    return f"{',' if index else ''}Time {times[0]:.1f}s:", ""


SPECS: dict[str, StreamSpec] = {
    "Qwen3-VL": StreamSpec(frame_text=_qwen3_text),
    "Qwen3.5": StreamSpec(frame_text=_qwen3_text),
    "Qwen2-VL / Qwen2.5-VL": StreamSpec(temporal="seconds"),
    "GLM-4.xV": StreamSpec(frame_text=_glm_text, token="image_token_id"),
    "Gemma 4": StreamSpec(frame_text=_gemma4_text),
    "VideoLLaMA3": StreamSpec(frame_text=_video_llama_3_text, processor_kwargs={"use_token_compression": False}),
    "LLaVA-OneVision": StreamSpec(),
    "LLaVA-NeXT-Video": StreamSpec(),
}

NOT_STREAMED: dict[str, str] = {
    "Molmo2": "Molmo2 lets every frame token of a video attend to every other one (one bidirectional block over the "
              "whole video), so a frame's cache entries depend on frames that have not arrived yet",
    "Qwen2.5-Omni": "the Qwen-Omni processors interleave a video with its audio in fixed-length chunks and number "
                    "both on one absolute time axis; vcast streams video frames only",
    "Qwen3-Omni": "the Qwen-Omni processors interleave a video with its audio in fixed-length chunks and number "
                  "both on one absolute time axis; vcast streams video frames only",
    "InternVL": "InternVL has no video path in the model: its frames are image blocks found with the processor's "
                "tokenizer, which the stream's frame encoding (get_video_features) does not cover yet",
    "SmolVLM": "SmolVLM has no video path in the model: its frames are image blocks found with the processor's "
               "tokenizer, which the stream's frame encoding (get_video_features) does not cover yet",
    "MiniCPM-V 4.6": "MiniCPM-V cuts each frame into an overview and slices, each its own run and encoder output; "
                     "the stream's frame encoding (one run per frame) does not cover that yet",
    "MiniCPM-V 4.7": "MiniCPM-V cuts each frame into an overview and slices, each its own run and encoder output; "
                     "the stream's frame encoding (one run per frame) does not cover that yet",
}


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic, antialiased resize of ``uint8[T, H, W, 3]`` (what transformers' torchvision backend does)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _text(ids: list[int]) -> torch.Tensor:
    return torch.tensor(ids, dtype=torch.long)


class StreamFamily:
    """A family's stream behaviour: its adapter's declarations plus its :class:`StreamSpec`."""

    def __init__(self, model, processor, config) -> None:
        from vcast.models import resolve_adapter

        self.model, self.processor = model, processor
        adapter_cls = resolve_adapter(model, config)
        name = adapter_cls.family_name
        if name in NOT_STREAMED or name not in SPECS:
            why = NOT_STREAMED.get(name, "it has no streaming declaration (vcast.streaming.families.SPECS)")
            raise UnsupportedModelError(f"vcast streams do not support {name} ({model.config.model_type!r}): {why}")
        if adapter_cls.runs not in ("video", "frame"):
            raise UnsupportedModelError(f"{name}'s prompt layout ({adapter_cls.runs!r} runs) has no stream form")
        self.spec = SPECS[name]
        self.adapter = adapter_cls(model, config, processor)  # never attached: it only describes the model
        self.name, self.inner = name, self.adapter.hook_module
        if getattr(processor, "tokenizer", None) is None or getattr(processor, "video_processor", None) is None:
            raise InputError(f"{type(processor).__name__} has no tokenizer or video processor; pass the model's "
                             "AutoProcessor")
        self.tokenizer = processor.tokenizer
        self.video_token = getattr(processor, "video_token", None)
        if not self.video_token:
            raise InputError(f"{type(processor).__name__} names no video token (processor.video_token)")
        token = self.spec.token
        self.video_token_id = int(getattr(self.inner.config, token)) if token else self.adapter.video_token_id
        self.mrope = self.adapter.positions.kind == "mrope"
        self.position_rows = 3 if self.mrope else 1
        self.stacked = self.mrope and self.adapter.runs == "video"  # all frames in one (t, h, w) block
        self.temporal_patch = int(getattr(processor.video_processor, "temporal_patch_size", None) or 1)
        self.tokens_per_second = getattr(self.inner.config.vision_config, "tokens_per_second", None)
        self.grid: tuple[int, int] | None = None  # (rows, cols) of one frame's LLM tokens
        self.frame_size: tuple[int, int] | None = None  # pinned processor size (families with patch grids)
        self.tail: torch.Tensor | None = None  # [e, D] protected tokens after the grid (LLaVA-OV's newline)
        self._output_type = None
        self._levels: list[tuple[str, int]] = []  # side feature names and their level counts
        self._relative: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def tokens_per_frame(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def tokenize(self, text: str, first: bool = False) -> list[int]:
        """Token ids of ``text`` (special tokens of the start of a sequence only when ``first``)."""
        return list(self.tokenizer(text, add_special_tokens=first)["input_ids"]) if text else []

    # ----- encoding ------------------------------------------------------------------------------
    def _process(self, frames: np.ndarray, **kwargs) -> dict:
        out = self.processor.video_processor(videos=[frames], return_tensors="pt", do_sample_frames=False,
                                             **self.spec.processor_kwargs, **kwargs)
        return dict(out)

    def _pixels(self, frames: np.ndarray) -> dict:
        """The video processor's output for ``frames``. Processors that return a patch grid
        (``video_grid_thw``: Qwen-VL, GLM, VideoLLaMA3) fit the whole clip into a pixel budget, so their
        frame size depends on the clip's length; a stream pins the size they give one temporal patch."""
        if self.frame_size is None:
            first = self._process(frames[: self.temporal_patch])
            grid = first.get("video_grid_thw")
            if grid is not None:
                patch = int(self.processor.video_processor.patch_size)
                self.frame_size = (int(grid[0, 1]) * patch, int(grid[0, 2]) * patch)
        if self.frame_size is None:
            return self._process(frames)
        if tuple(frames.shape[1:3]) == self.frame_size:
            out = self._process(frames)
            grid = out["video_grid_thw"][0, 1:].tolist()
            patch = int(self.processor.video_processor.patch_size)
            if tuple(g * patch for g in grid) == self.frame_size:
                return out
        return self._process(resize_frames(frames, *self.frame_size), do_resize=False)

    def encode(self, frames: np.ndarray) -> Encoded:
        """Encode ``frames uint8[P * temporal_patch, H, W, 3]`` into ``P`` LLM frames (the vision tower
        runs once on them)."""
        device = next(self.model.parameters()).device
        kwargs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self._pixels(frames).items()}
        enc = self.adapter.call_encoder(self.inner.get_video_features, kwargs)
        pixels = kwargs.get("pixel_values_videos")
        (shape,) = self.adapter.video_shapes(enc, {"pixel_shape": tuple(pixels.shape)}, kwargs)
        (tokens,) = self.adapter.split(enc)
        p, n = shape.frames, shape.tokens_per_frame
        if p * self.temporal_patch != frames.shape[0] or tokens.shape[0] != shape.length:
            raise UnsupportedModelError(f"{self.name} encoded {frames.shape[0]} frames into {tokens.shape[0]} tokens "
                                        f"on a {p} x {shape.rows}x{shape.cols} grid; vcast streams expect "
                                        f"{frames.shape[0] // self.temporal_patch} frames of {n} grid tokens")
        if self.grid is None:
            self.grid = (shape.rows, shape.cols)
        elif self.grid != (shape.rows, shape.cols):
            raise UnsupportedModelError(f"{self.name}'s processor gave this chunk a {shape.rows}x{shape.cols} token "
                                        f"grid, the stream's first chunk {self.grid[0]}x{self.grid[1]}")
        is_grid = shape.is_grid(tokens.device)
        if shape.extra:
            if not bool(is_grid[: p * n].all()):
                raise UnsupportedModelError(f"{self.name}'s video has protected tokens between its frames; vcast "
                                            "streams support them after the last frame only")
            self.tail = tokens[p * n:]
        self._output_type = type(enc)
        extras, self._levels = [], []
        for name in self.adapter.side_features:
            levels = getattr(enc, name, None) or []
            self._levels.append((name, len(levels)))
            extras += [self.adapter.grid_features(level[0], shape) for level in levels]
        return Encoded(self.adapter.grid_features(tokens, shape), extras)

    def mm_outputs(self, kept: torch.Tensor, extras: list[torch.Tensor]):
        """The ``mm_encoder_outputs["video"]`` object for kept features ``[K, D]`` and their side features."""
        out = self._output_type(pooler_output=self.adapter.pack([kept]))
        i = 0
        for name, count in self._levels:
            setattr(out, name, [(e,) for e in extras[i:i + count]])
            i += count
        return out

    # ----- prompt and positions --------------------------------------------------------------------
    def frame_ids(self, index: int, times: Times) -> tuple[list[int], list[int]]:
        """Token ids of the text before and after frame ``index``'s placeholders."""
        before, after = self.spec.frame_text(self.processor, index, times)
        return self.tokenize(before), self.tokenize(after)

    def relative_positions(self, before: int, after: int) -> torch.Tensor:
        """``LongTensor[R, before + N + after + 1]``: the ids of one frame's unpruned run, counted from its
        start, plus the id of the token that would follow it."""
        key = (before, after)
        if key not in self._relative:
            n = self.tokens_per_frame
            length = before + n + after + 1
            if not self.mrope:
                self._relative[key] = torch.arange(length)[None]
            else:
                types = torch.zeros(length, dtype=torch.long)
                types[before:before + n] = 2
                ids = torch.where(types == 2, self.video_token_id, 0)
                m = self.adapter.merge
                grid = torch.tensor([[1, self.grid[0] * m, self.grid[1] * m]])
                positions = self.adapter.rope_index({"input_ids": ids[None], "mm_token_type_ids": types[None],
                                                     "video_grid_thw": grid})
                self._relative[key] = positions[:, 0].long().cpu()
        return self._relative[key]

    def temporal_id(self, cursor: Cursor, times: Times) -> int:
        """Temporal id offset of the next frame in a one-run-per-video MRoPE block."""
        if self.spec.temporal == "seconds" and self.tokens_per_second is not None:
            return math.floor((times[0] - cursor.first_time) * self.tokens_per_second + 1e-6)
        return cursor.frames

    def frame_run(self, cursor: Cursor, times: Times, grid_index: torch.Tensor,
                  text: tuple[list[int], list[int]] | None = None) -> tuple[Run, Cursor]:
        """The run of the next committed frame (times ``times``) keeping the tokens ``grid_index`` (sorted
        indices into the frame's ``N``), and the cursor after it. ``text``: its :meth:`frame_ids`."""
        before, after = self.frame_ids(cursor.frames, times) if text is None else text
        b, n, k = len(before), self.tokens_per_frame, grid_index.shape[0]
        rel = self.relative_positions(b, len(after))
        if self.stacked:
            base, rel = cursor.video_start, rel.clone()
            rel[0, b:b + n] += self.temporal_id(cursor, times)
            nxt = base + int(rel[0, -1])
        else:
            base = cursor.next
            nxt = base + int(rel[0, -1])
        columns = torch.cat([torch.arange(b), b + grid_index, torch.arange(b + n, b + n + len(after))])
        ids = torch.cat([_text(before), torch.full((k,), self.video_token_id), _text(after)])
        video = torch.zeros(ids.shape[0], dtype=torch.bool)
        video[b:b + k] = True
        run = Run(ids, base + rel[:, columns], video)
        return run, replace(cursor, next=nxt, frames=cursor.frames + 1)

    def close_video(self, cursor: Cursor) -> tuple[Run | None, torch.Tensor | None, int]:
        """``(run, features, text_start)``: the protected tokens after the last frame (with their features
        ``[e, D]``), or ``(None, None, start)``; ``text_start`` is the position of the text after the video."""
        if self.tail is None:
            return None, None, cursor.next
        e = self.tail.shape[0]
        positions = (cursor.next + torch.arange(e)).expand(self.position_rows, -1)
        run = Run(torch.full((e,), self.video_token_id), positions, torch.ones(e, dtype=torch.bool))
        return run, self.tail, cursor.next + e


def streamed_model_types() -> dict[str, str]:
    """``{config.model_type: family name}`` of the families vcast streams (those the installed transformers has)."""
    from vcast.models.base import _REGISTRY

    return {t: cls.family_name for t, classes in sorted(_REGISTRY.items()) for cls in classes[:1]
            if getattr(cls, "family_name", None) in SPECS}


def resolve_family(model, processor, config) -> StreamFamily:
    """The stream family of ``model`` (raises :class:`UnsupportedModelError` for other architectures)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in streamed_model_types():
        try:
            return StreamFamily(model, processor, config)  # raises, saying why
        except UnsupportedModelError as err:
            raise UnsupportedModelError(f"{err} (vcast streams: model types {sorted(streamed_model_types())})") from None
    return StreamFamily(model, processor, config)
