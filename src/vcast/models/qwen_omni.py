"""The Qwen-Omni thinkers: Qwen2.5-Omni (``qwen2_5_omni``) and Qwen3-Omni-MoE (``qwen3_omni_moe``).

The hook sits on the thinker's inner model (``model.thinker.model`` for the whole model,
``model.model`` for a ``*ThinkerForConditionalGeneration`` alone, model types ``*_thinker``); in
transformers releases where the thinker has no inner multimodal model (Qwen2.5-Omni in 5.20, whose
``thinker.model`` is the text model) it sits on the thinker itself. The video
path is Qwen-VL's (``get_video_features(pixel_values_videos, video_grid_thw)``, per-video raster tokens,
``<|VIDEO|>`` placeholders, MRoPE ids; Qwen3-Omni adds deepstack features), with the Omni
``get_rope_index(input_ids, image_grid_thw, video_grid_thw, attention_mask, use_audio_in_video,
audio_seqlens, second_per_grids)``: the video's t axis is in absolute time
(``second_per_grid * position_id_per_seconds``).

Audio is never pruned. With audio taken from the video (``use_audio_in_video``), the processor cuts the
video and its audio into ``seconds_per_chunk`` chunks and interleaves them, ``<|VIDEO|>`` x (frames of
chunk 1), ``<|AUDIO|>`` x (audio of chunk 1), ...: each video's tokens form runs of whole frames
(``runs="frames"``), still in raster order, and the audio runs between them are text to the pruning
(kept, with their positions). Kept video tokens keep their ``(t, h, w)`` ids, so the time alignment with
the audio is unchanged.

Speech output: the talker reads the thinker's hidden states of the prompt aligned with the unpruned
``input_ids``, so it cannot follow a pruned prompt; applying vcast to a model whose talker is enabled
raises (call ``model.disable_talker()`` for text answers, or apply it to ``model.thinker``).
"""

from __future__ import annotations

import torch

from vcast.errors import UnsupportedModelError
from vcast.models.family import register_family
from vcast.models.qwen_vl import QwenStyleFamily


class QwenOmniFamily(QwenStyleFamily):
    """Shared Omni-thinker logic: the Omni rope index, runs of whole frames, talker refused."""

    inner_paths = ("thinker.model", "thinker", "model", "")  # 5.20-5.2x: the thinker itself holds the vision path
    needed = ("get_video_features", "get_image_features", "get_rope_index")
    runs = "frames"

    def __init__(self, model, config, processor=None) -> None:
        if getattr(model, "has_talker", False) or getattr(model, "talker", None) is not None:
            raise UnsupportedModelError(
                f"{type(model).__name__} has its talker enabled: the talker reads the thinker's hidden states of the "
                "unpruned prompt, so speech output cannot follow a pruned one. Call model.disable_talker() for text "
                "answers (or apply vcast to model.thinker)")
        super().__init__(model, config, processor)

    def rope_index(self, kwargs):
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(kwargs["input_ids"])
        features_mask = kwargs.get("feature_attention_mask")
        audio = features_mask.sum(1) if features_mask is not None else None  # as the thinker's forward does
        positions, _ = self.hook_module.get_rope_index(
            kwargs["input_ids"], kwargs.get("image_grid_thw"), kwargs.get("video_grid_thw"), mask,
            bool(kwargs.get("use_audio_in_video") or False), audio, kwargs.get("video_second_per_grid"))
        return positions


@register_family
class Qwen2_5OmniAdapter(QwenOmniFamily):
    """Qwen2.5-Omni's thinker (whole model or thinker alone)."""

    family_name = "Qwen2.5-Omni"
    model_types = ("qwen2_5_omni", "qwen2_5_omni_thinker")


@register_family
class Qwen3OmniMoeAdapter(QwenOmniFamily):
    """Qwen3-Omni-MoE's thinker (whole model or thinker alone): deepstack features follow the kept tokens."""

    family_name = "Qwen3-Omni"
    model_types = ("qwen3_omni_moe", "qwen3_omni_moe_thinker")
    side_features = ("deepstack_features",)
