"""The GLM-4.xV adapter: GLM-4.1V (``glm4v``), GLM-4.5V (``glm4v_moe``), GLM-4.6V (``glm46v``).

GLM's video path is Qwen-style (``get_video_features(pixel_values_videos, video_grid_thw)``: per-video
raster tokens of every temporal patch; MRoPE ids from ``get_rope_index(input_ids, mm_token_type_ids,
...)``), but its placeholders differ: ``Glm4vProcessor`` writes each temporal patch as
``<|begin_of_image|>`` + ``<|image|>`` x n + ``<|end_of_image|>`` + its timestamp (``"3"`` in GLM-4.1V/4.5V,
``"3.0 seconds"`` in GLM-4.6V) inside ``<|begin_of_video|> ... <|end_of_video|>``. The video tokens reuse
the *image* token id; only ``mm_token_type_ids == 2`` tells them apart (the model itself matches video
features to every ``<|image|>`` token, so transformers runs no prompt with both an image and a video).
One run per temporal patch; the markers and timestamps between runs are text and always kept.
"""

from __future__ import annotations

from vcast.models.family import register_family
from vcast.models.qwen_vl import QwenStyleFamily


@register_family
class Glm4vAdapter(QwenStyleFamily):
    """GLM-4.1V / 4.5V / 4.6V: Qwen-style grids and MRoPE, video tokens marked by ``mm_token_type_ids``."""

    family_name = "GLM-4.xV"
    model_types = ("glm4v", "glm4v_moe", "glm46v")
    placeholder = "mm_type"
    runs = "frame"
    rope_keys = ("image_grid_thw", "video_grid_thw")
