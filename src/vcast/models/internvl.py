"""The InternVL adapter (``model_type="internvl"``: InternVL 2.5 / 3 / 3.5 in transformers' own classes).

``InternVLProcessor`` turns each ``<video>`` into its frames, ``"Frame1: <img>" + <IMG_CONTEXT> x n + "</img>\\n
Frame2: <img>..."``, and puts every frame into ``pixel_values`` next to the image tiles, in prompt order;
``get_image_features`` encodes all of them (``pooler_output [tiles + frames, n, D]``, n = ``(image_size / patch *
downsample_ratio)**2``, a square pixel-shuffled grid). A video is a maximal sequence of single-tile blocks whose
text reads ``Frame1: <img>``, ``</img>\\nFrame2: <img>``, ... (the processor's exact strings), found with the
processor's tokenizer (:mod:`vcast.models.image_blocks`): apply with ``vcast.apply(model, config,
processor=processor)``. The ``Frame{i}:`` text, the ``<img>`` / ``</img>`` markers and every image are kept.
Positions are 1-D (``"original"`` or ``"compact"``).
"""

from __future__ import annotations

import re

from vcast.models.family import register_family
from vcast.models.image_blocks import ImageBlockFamily


@register_family
class InternVLAdapter(ImageBlockFamily):
    """InternVL: videos are runs of ``Frame{i}:`` image blocks, found with the processor's tokenizer."""

    family_name = "InternVL"
    model_types = ("internvl",)
    needed = ("get_image_features", "language_model")
    block_end = ("end_image_token", "</img>")
    frames_as = "'Frame1: <img>...</img>'"

    def patterns(self, tokenizer):
        start = re.escape(getattr(tokenizer, "start_image_token", "<img>"))
        end = re.escape(getattr(tokenizer, "end_image_token", "</img>"))
        return rf"Frame1: {start}$", rf"{end}\nFrame(?P<index>\d+): {start}", rf"Frame\d+: {start}$"

    def tokens_per_frame(self) -> int:
        cfg = self.hook_module.config
        side = cfg.vision_config.image_size[0] // cfg.vision_config.patch_size[0]
        return int(side * side * cfg.downsample_ratio**2)
