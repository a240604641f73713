"""The MiniCPM-V 4.6 and 4.7 adapters (``model_type="minicpmv4_6"``, ``"minicpmv4_7"``).

``MiniCPMV4_6VideoProcessor`` cuts every frame into *units*: an overview of the whole frame and, where the
frame is larger than ``scale_resolution``, ``R x C`` slices of a finer resize, and NaViT-packs all units of all
videos into ``pixel_values_videos [1, 3, patch, L]`` with one ``(h, w)`` patch grid per unit in
``target_sizes_videos``. ``MiniCPMV4_6Processor`` writes a video as ``<image_id>k</image_id>`` (with
``use_image_id``) and then per frame ``<image>`` + overview tokens + ``</image>``, followed by the slices
``<slice>`` + tokens + ``</slice>`` (rows joined by ``\\n``); all placeholders are ``config.video_token_id``.
``get_video_features`` returns one ``[h' * w', D]`` tensor per unit (``h' = h / 4`` after the two 2x2 merges of
``downsample_mode="16x"``, ``h / 2`` with ``"4x"``), raster order.

The model receives no frame or video counts, so vcast reads them from the prompt: the runs of placeholders are
the units in order; a run right after the token that opens the first run (``<image>``) starts a frame, the
others are its slices; frames whose runs follow with exactly the two markers ``</image><image>`` or
``</slice><image>`` between them form one video (anything else between two frames, such as the next video's
``<image_id>``, starts another). Each frame's ``N`` tokens are its overview and its slices, in prompt order;
every frame of a video must have the same runs, else vcast raises (``stack_frames > 1`` composites, frames of
different sizes). Two videos with nothing between them (``use_image_id=False`` and adjacent placeholders) read
as one video; 4.7's processor writes no ``<image_id>`` before a video, so there a prompt's videos need text
between them (the chat template's newline), and 4.7's own canvas MRoPE likewise treats frames with only markers
between them as one group. The markers, the ids and the ``\\n`` between slice rows are kept.

A frame with slices is several grids, not one: methods that need one rectangular grid (``pool``) raise there;
frames without slices (small frames, or the processor called with ``slice_mode=False``) are one grid. The LLM
(Qwen3.5's hybrid text model) takes 1-D positions in 4.6 (``"original"`` or ``"compact"``) and 4.7's canvas MRoPE
``(t, h, w)`` ids from its ``get_rope_index`` (kept as they are); its linear-attention states see only the kept
tokens.
"""

from __future__ import annotations

import torch

from vcast.errors import InputError
from vcast.models.family import FamilyAdapter, VideoShape, register_family
from vcast.models.positions import MROPE, ROPE_1D

LENGTHS_ATTR = "_vcast_video_lengths"


def placeholder_runs(input_ids: torch.Tensor, token: int) -> list[tuple[int, int, int]]:
    """``(row, start, end)`` of every run of ``token`` in ``input_ids [B, L]``, row-major."""
    edges = torch.nn.functional.pad(input_ids == token, (1, 1)).to(torch.int8).diff(dim=1)
    starts, ends = (edges == 1).nonzero().tolist(), (edges == -1).nonzero()[:, 1].tolist()
    return [(row, start, end) for (row, start), end in zip(starts, ends)]


@register_family
class MiniCPMV4_6Adapter(FamilyAdapter):
    """MiniCPM-V 4.6: frames of an overview and slices, NaViT-packed units, 1-D positions."""

    family_name = "MiniCPM-V 4.6"
    model_types = ("minicpmv4_6",)
    needed = ("get_video_features", "get_image_features", "language_model")
    runs = "frame"
    positions = ROPE_1D
    video_args = ("target_sizes_videos", "downsample_mode")
    runs_hint = "an overview and its slices; call the processor with slice_mode=False for frames of one grid"

    def video_shapes(self, enc, args, kwargs):
        (sizes,) = self.recorded(args, kwargs, "target_sizes_videos")
        mode = args.get("downsample_mode") or kwargs.get("downsample_mode") or self.hook_module.config.downsample_mode
        units = (sizes // (2 if mode == "4x" else 4)).tolist()
        runs = placeholder_runs(kwargs["input_ids"], self.video_token_id)
        if [end - start for _, start, end in runs] != [h * w for h, w in units]:
            raise InputError(f"the prompt's {self.family_name} video runs hold {[e - s for _, s, e in runs]} tokens, "
                             f"its {len(units)} frame units {[h * w for h, w in units]}; vcast does not recognise "
                             "this prompt layout: build the prompt with the model's processor")
        if not runs or runs[0][1] == 0:
            raise InputError(f"{self.family_name} video placeholders must follow their <image> marker")
        rows, starts = zip(*[(row, start) for row, start, _ in runs])
        before = kwargs["input_ids"][list(rows), [s - 1 for s in starts]].tolist()  # the marker opening each run
        videos: list[list[list[int]]] = []  # per video, per frame, its unit indices
        last = None
        for u, (row, start, end) in enumerate(runs):
            if before[u] != before[0]:  # a slice of the current frame
                videos[-1][-1].append(u)
            elif last is not None and last[0] == row and start - last[2] == 2:  # the next frame of this video
                videos[-1].append([u])
            else:
                videos.append([[u]])
            last = (row, start, end)
        shapes = []
        for v, frames in enumerate(videos):
            layout = {tuple(tuple(units[u]) for u in frame) for frame in frames}
            if len(layout) != 1:
                raise InputError(f"{self.family_name} video {v} has frames of different units {sorted(layout)} "
                                 "(stack_frames > 1 composites, or frames of different sizes); vcast needs every "
                                 "frame of a video to be cut the same way")
            (cut,) = layout
            lengths = tuple(h * w for h, w in cut)
            rows, cols = cut[0] if len(cut) == 1 else (1, sum(lengths))
            shapes.append(VideoShape(len(frames), rows, cols, frame_runs=lengths))
        setattr(enc, LENGTHS_ATTR, [s.length for s in shapes])
        return shapes

    def split(self, enc) -> list[torch.Tensor]:
        """Per video ``[L_i, D]``: its units' tokens (one tensor per unit in ``pooler_output``), concatenated."""
        return list(torch.cat(list(enc.pooler_output)).split(getattr(enc, LENGTHS_ATTR)))


@register_family
class MiniCPMV4_7Adapter(MiniCPMV4_6Adapter):
    """MiniCPM-V 4.7: 4.6's frames and units, canvas MRoPE ``(t, h, w)`` ids from the model's ``get_rope_index``."""

    family_name = "MiniCPM-V 4.7"
    model_types = ("minicpmv4_7",)
    positions = MROPE

    def rope_index(self, kwargs):
        if kwargs.get("mm_token_type_ids") is None:
            raise InputError("mm_token_type_ids is missing; pass the processor's full output (it returns them)")
        extra = {k: kwargs[k] for k in ("target_sizes", "target_sizes_videos", "downsample_mode")
                 if kwargs.get(k) is not None}
        positions, _ = self.hook_module.get_rope_index(
            kwargs["input_ids"], mm_token_type_ids=kwargs["mm_token_type_ids"],
            attention_mask=kwargs.get("attention_mask"), **extra)
        return positions
