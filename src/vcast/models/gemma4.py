"""The Gemma 4 adapter (``model_type="gemma4"``, ``Gemma4ForConditionalGeneration``).

``Gemma4Processor`` writes each frame as ``"MM:SS <start_of_image>" + <|video|> x n + "<end_of_image>"``,
frames joined by spaces: one run of ``n`` placeholders per frame, the timestamp and the image delimiters
between runs (text: always kept). ``get_video_features(pixel_values_videos, video_position_ids,
num_frames_per_video)`` runs the vision tower on every frame, pools ``k x k`` patches (k =
``vision_config.pooling_kernel_size``), strips the padding patches and returns a tuple of per-video
``[T * n, D]`` tokens; pooled token ``i`` of a frame is cell ``(i // cols, i % cols)`` of its
``rows x cols`` grid, with ``cols = (max patch x + 1) / k`` read from ``video_position_ids``.

Positions are 1-D (``positions="original"``, the default, or ``"compact"``). Gemma 4 attends
bidirectionally inside each image/video run on its sliding-window layers, with the runs read from
``mm_token_type_ids``: pruning gathers ``mm_token_type_ids`` with the sequence, so the kept tokens of a frame
still form one block. The sliding window counts cache slots, not position ids, so after pruning a window
reaches further back in the original prompt (the window holds the same number of kept tokens).
Audio tokens (``<|audio|>``) are never touched.
"""

from __future__ import annotations

from vcast.errors import InputError
from vcast.models.family import FamilyAdapter, VideoShape, register_family
from vcast.models.positions import ROPE_1D


@register_family
class Gemma4Adapter(FamilyAdapter):
    """Gemma 4: one run per frame, pooled square-patch grids, 1-D RoPE."""

    family_name = "Gemma 4"
    model_types = ("gemma4",)
    needed = ("get_video_features", "get_image_features", "language_model")
    runs = "frame"
    positions = ROPE_1D
    video_args = ("video_position_ids", "num_frames_per_video")

    def video_shapes(self, enc, args, kwargs):
        frames, patches = self.recorded(args, kwargs, "num_frames_per_video", "video_position_ids")
        k = int(self.hook_module.config.vision_config.pooling_kernel_size)
        frames = [int(t) for t in frames.tolist()]
        valid = (patches != -1).all(-1)  # [sum T, max patches]
        per_frame = (valid.sum(-1) // k**2).tolist()
        width = ((patches[..., 0].clamp(min=0).amax(-1) + 1) // k).tolist()
        shapes, first = [], 0
        for t in frames:
            n, cols = int(per_frame[first]), int(width[first])
            if cols < 1 or n % cols or any(int(x) != n for x in per_frame[first:first + t]):
                raise InputError(f"a Gemma 4 video's frames give {per_frame[first:first + t]} tokens with grid width "
                                 f"{cols}; vcast needs frames of one size")
            shapes.append(VideoShape(t, n // cols, cols))
            first += t
        return shapes
