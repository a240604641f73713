"""The Qwen-style MRoPE families: Qwen2-VL, Qwen2.5-VL, Qwen3-VL (dense, MoE), Qwen3.5 (dense, MoE).

They share transformers' code path: ``get_video_features(pixel_values_videos, video_grid_thw)`` returns a
tuple of per-video ``[t * h * w / merge**2, D]`` tokens in raster ``(t, h', w')`` order (Qwen2.5-VL's window
permutation is undone), the placeholder is ``config.video_token_id``, and positions are MRoPE ``(t, h, w)``
ids from ``get_rope_index(input_ids, mm_token_type_ids, ...)``. The grid of each video is its row of
``video_grid_thw`` (``generate()`` pops it; the wrapped ``get_video_features`` records it).

- Qwen2-VL / Qwen2.5-VL: one ``<|vision_start|> ... <|vision_end|>`` run per video.
- Qwen3-VL: one run per temporal patch, ``<t seconds>`` text between runs (kept); deepstack features
  are gathered with each video's ``keep_index``. ``prune_at="vision:k"`` (inside the encoder) is
  :mod:`vcast.models.qwen3_vl_early`.
- Qwen3.5 (``Qwen3VLProcessor``, the same per-frame layout, no deepstack): a hybrid LLM whose
  linear-attention (Gated DeltaNet) layers keep a convolution and a recurrent state instead of a KV cache.
  Pruning happens before the LLM, so both states see only the kept tokens, in their original order.

Positions (:data:`~vcast.models.positions.MROPE`): every kept video token keeps its ``(t, h, w)`` id and
every text token its id, so decoding continues exactly as after the unpruned prompt. The text row of
generate()'s 4-row ids is renumbered contiguously (decode steps shifted by the dropped count), so
transformers never mistakes the pruned sequence for packed sequences; ``model.model.rope_deltas`` is set
for the pruned layout, so manual decode loops that omit position ids stay correct too. For merging
methods the merged tokens replace the main features and the deepstack taps are those of the kept positions.
"""

from __future__ import annotations

from vcast.errors import InputError
from vcast.models.family import FamilyAdapter, VideoShape, register_family
from vcast.models.positions import MROPE


class QwenStyleFamily(FamilyAdapter):
    """Shared Qwen-style logic: ``video_grid_thw`` grids and ``get_rope_index`` MRoPE ids."""

    positions = MROPE
    needed = ("get_video_features", "get_image_features", "get_rope_index", "language_model")
    video_args = ("video_grid_thw",)
    rope_keys = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")

    @property
    def merge(self) -> int:
        return int(self.hook_module.config.vision_config.spatial_merge_size)

    def grid_thw(self, args: dict, kwargs: dict) -> list[tuple[int, int, int]]:
        """Per video ``(t, h, w)`` in patches (``video_grid_thw`` of the encoder call or of the forward call)."""
        (grid,) = self.recorded(args, kwargs, "video_grid_thw")
        return [tuple(int(g) for g in row) for row in grid.tolist()]

    def video_shapes(self, enc, args, kwargs):
        m = self.merge
        return [VideoShape(t, h // m, w // m) for t, h, w in self.grid_thw(args, kwargs)]

    def rope_index(self, kwargs):
        if kwargs.get("mm_token_type_ids") is None:
            raise InputError("mm_token_type_ids is missing; pass the processor's full output (it returns them)")
        extra = {k: kwargs[k] for k in self.rope_keys if kwargs.get(k) is not None}
        positions, _ = self.hook_module.get_rope_index(
            kwargs["input_ids"], mm_token_type_ids=kwargs["mm_token_type_ids"],
            attention_mask=kwargs.get("attention_mask"), **extra)
        return positions


@register_family
class Qwen2VLAdapter(QwenStyleFamily):
    """Qwen2-VL and Qwen2.5-VL: one ``<|vision_start|> ... <|vision_end|>`` run per video."""

    family_name = "Qwen2-VL / Qwen2.5-VL"
    model_types = ("qwen2_vl", "qwen2_5_vl")
    runs = "video"


@register_family
class Qwen3VLAdapter(QwenStyleFamily):
    """Qwen3-VL (dense and MoE): one run per temporal patch (timestamps between), deepstack features.

    Early pruning (``prune_at="vision:k"``) subclasses this and replaces :meth:`encode_videos`.
    """

    family_name = "Qwen3-VL"
    model_types = ("qwen3_vl", "qwen3_vl_moe")
    runs = "frame"
    side_features = ("deepstack_features",)


@register_family
class Qwen3_5Adapter(QwenStyleFamily):
    """Qwen3.5 (dense and MoE): Qwen3-VL's prompt layout, a hybrid linear-attention LLM, no deepstack."""

    family_name = "Qwen3.5"
    model_types = ("qwen3_5", "qwen3_5_moe")
    runs = "frame"
