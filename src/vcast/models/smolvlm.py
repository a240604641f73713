"""The SmolVLM adapter (``model_type="smolvlm"``: SmolVLM / SmolVLM2).

SmolVLM has no video path in the model: ``SmolVLMProcessor`` writes each video as an intro (``"You are provided
the following series of four frames from a 0:00:02 [H:MM:SS] video.\\n"``), then per frame ``"\\nFrame from
MM:SS:" + <fake_token_around_image><global-img> + <image> x n + <fake_token_around_image>``, and the frames go
into ``pixel_values`` as images (``[videos, T, 3, H, W]``, zero frames padding shorter videos, which the model
drops); ``get_image_features`` returns per batch entry its images' ``[images * n, D]`` tokens, n = ``(image_size
/ patch)**2 / scale_factor**2`` (a square pixel-shuffled grid; transformers 5.20 returns one ``[images, n, D]`` tensor instead). Frames are found with the processor's tokenizer
(:mod:`vcast.models.image_blocks`): apply with ``vcast.apply(model, config, processor=processor)``. The intro,
the timestamps, the block markers and every image (split into ``<row_i_col_j>`` tiles or not) are kept.
transformers' SmolVLM takes images or videos in one call, not both (they share ``pixel_values``). Positions are
1-D (``"original"`` or ``"compact"``).
"""

from __future__ import annotations

import re

from vcast.models.family import register_family
from vcast.models.image_blocks import ImageBlockFamily


@register_family
class SmolVLMAdapter(ImageBlockFamily):
    """SmolVLM: videos are runs of ``Frame from MM:SS:`` image blocks, found with the processor's tokenizer."""

    family_name = "SmolVLM"
    model_types = ("smolvlm",)
    needed = ("get_image_features", "text_model")
    block_end = ("fake_image_token", "<fake_token_around_image>")
    frames_as = "'Frame from 00:01:<fake_token_around_image><global-img><image>...'"
    tensor_blocks = "per_token"  # transformers 5.20's merger reads [blocks, p, D] with p dividing every row's count

    def patterns(self, tokenizer):
        fake = re.escape(getattr(tokenizer, "fake_image_token", "<fake_token_around_image>"))
        glob = re.escape(getattr(tokenizer, "global_image_token", "<global-img>"))
        frame = rf"\nFrame from \d+:\d\d:{fake}{glob}"
        return (rf"frames from a \d+:\d\d:\d\d \[H:MM:SS\] video\.\n{frame}$", rf"{fake}{frame}",
                rf"Frame from \d+:\d\d:{fake}{glob}$")

    def tokens_per_frame(self) -> int:
        cfg = self.hook_module.config
        return (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2 // cfg.scale_factor**2
