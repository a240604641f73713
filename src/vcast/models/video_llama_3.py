"""The VideoLLaMA3 adapter (``model_type="video_llama_3"``).

``VideoLlama3Processor`` writes each frame as ``"Time {t:.1f}s:"`` + ``<|video_pad|>`` x n, frames joined by
``","``: one run per frame, the timestamp text between runs (kept). ``get_video_features(pixel_values_videos,
video_grid_thw, video_merge_sizes)`` returns a tuple of per-video ``[t * h * w / m**2, D]`` tokens, raster
``(t, h', w')`` after the encoder's bilinear ``m x m`` downsampling (m = the video's merge size; temporal
patch 1, so t is the frame count). Positions are 1-D (``"original"`` or ``"compact"``).

VideoLLaMA3 has its own token compression: with ``use_token_compression=True`` (the processor default)
``video_compression_mask`` keeps only the tokens whose patches changed since the previous frame, so frames
hold different token counts and the prompt has no ``T x N`` grid. vcast prunes the full grid instead and
refuses a compressed prompt, saying so (process the video with ``use_token_compression=False``); the
all-True mask of an uncompressed prompt is dropped after pruning (the model would index the pruned
features with it).
"""

from __future__ import annotations

from vcast.errors import InputError
from vcast.models.family import FamilyAdapter, VideoShape, register_family
from vcast.models.positions import ROPE_1D


@register_family
class VideoLlama3Adapter(FamilyAdapter):
    """VideoLLaMA3: one run per frame (timestamps between), per-video merge sizes, 1-D RoPE."""

    family_name = "VideoLLaMA3"
    model_types = ("video_llama_3",)
    needed = ("get_video_features", "get_image_features", "language_model")
    runs = "frame"
    positions = ROPE_1D
    video_args = ("video_grid_thw", "video_merge_sizes")

    def collect_videos(self, kwargs):
        mask = kwargs.get("video_compression_mask")
        if mask is not None and not bool(mask.all()):
            raise InputError(
                f"VideoLLaMA3's processor already dropped {int((~mask).sum())} of {mask.numel()} video tokens (its "
                "pixel-difference token compression, use_token_compression=True), so the prompt holds no T x N frame "
                "grid. vcast prunes the full grid in its place: process the video with use_token_compression=False")
        return super().collect_videos(kwargs)

    def video_shapes(self, enc, args, kwargs):
        grid, merge = self.recorded(args, kwargs, "video_grid_thw", "video_merge_sizes")
        return [VideoShape(t, h // m, w // m) for (t, h, w), m in zip(grid.tolist(), merge.tolist())]

    def finish(self, kwargs, plan):
        kwargs["video_compression_mask"] = None  # all True before pruning; it indexes the unpruned features
        return kwargs
