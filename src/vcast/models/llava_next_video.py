"""The LLaVA-NeXT-Video adapter (``model_type="llava_next_video"``).

``LlavaNextVideoProcessor`` writes ``<video>`` x ``T * n`` per video, one run, nothing between frames.
``get_video_features(pixel_values_videos [V, T, 3, H, W], ...)`` runs the CLIP tower on every frame,
drops the CLS token (``vision_feature_select_strategy="default"``), pools the ``P x P`` patch grid with
``spatial_pool_stride`` (average, max or a strided conv: ``floor(P / s)`` per side) and projects it:
``pooler_output`` is ``[V, T * n, D]`` in raster ``(t, y, x)`` order. Positions are 1-D
(``positions="original"`` or ``"compact"``). Images (anyres, their own ``<image>`` run) are never touched.
"""

from __future__ import annotations

from vcast.errors import InputError
from vcast.models.family import FamilyAdapter, VideoShape, register_family
from vcast.models.positions import ROPE_1D


@register_family
class LlavaNextVideoAdapter(FamilyAdapter):
    """LLaVA-NeXT-Video: one run per video, a pooled square grid per frame, 1-D RoPE."""

    family_name = "LLaVA-NeXT-Video"
    model_types = ("llava_next_video",)
    needed = ("get_video_features", "get_image_features", "vision_resampler", "language_model")
    runs = "video"
    positions = ROPE_1D
    pooled = "stacked"

    def video_shapes(self, enc, args, kwargs):
        shape = args.get("pixel_shape")
        if shape is None:
            pixels = kwargs.get("pixel_values_videos")
            shape = None if pixels is None else tuple(pixels.shape)
        if shape is None or len(shape) != 5:
            raise InputError("cannot tell the frame count of the pre-encoded LLaVA-NeXT-Video videos: encode them "
                             "through model.get_video_features while vcast is applied")
        cfg = self.hook_module.config
        side = (cfg.vision_config.image_size // cfg.vision_config.patch_size) // cfg.spatial_pool_stride
        return [VideoShape(int(shape[1]), side, side)] * int(shape[0])
