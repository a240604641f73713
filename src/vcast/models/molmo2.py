"""The Molmo2 adapter (``model_type="molmo2"``).

``Molmo2Processor`` writes each frame as ``"{t:.1f} <frame_start>" + <im_patch> x (rows * cols) +
"<frame_end>"``, frames joined by spaces: one run per frame, the timestamp and frame markers between runs
(text, kept). ``get_video_features(pixel_values_videos, video_token_pooling, video_grids)`` pools the
SigLIP patches of every frame to a ``rows x cols`` grid (``video_grids`` per video: frames, rows, cols)
and returns a tuple of per-video ``[T * rows * cols, D]`` tokens in raster order; the model *adds* them
to the ``<im_patch>`` embeddings (kept tokens keep both). Image and frame tokens attend to each other
bidirectionally, the block read from ``mm_token_type_ids`` (pruned with the sequence). Positions are 1-D
(``"original"`` or ``"compact"``). transformers' Molmo2 takes one video per prompt and no image next to
it; a processor run with ``video_use_col_tokens=True`` (an ``<im_col>`` after each row) is refused as an
unrecognised layout.
"""

from __future__ import annotations

from vcast.models.family import FamilyAdapter, VideoShape, register_family
from vcast.models.positions import ROPE_1D


@register_family
class Molmo2Adapter(FamilyAdapter):
    """Molmo2: one run per frame, pooled frame grids from ``video_grids``, 1-D RoPE."""

    family_name = "Molmo2"
    model_types = ("molmo2",)
    needed = ("get_video_features", "get_image_features", "language_model")
    runs = "frame"
    positions = ROPE_1D
    video_args = ("video_grids",)

    def video_shapes(self, enc, args, kwargs):
        (grids,) = self.recorded(args, kwargs, "video_grids")
        return [VideoShape(t, rows, cols) for t, rows, cols in grids.tolist()]
