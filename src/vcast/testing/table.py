"""The table of tiny random-weight Video LLMs: one :class:`TinySpec` row per ``config.model_type``.

A row is data: the transformers config class, the text / vision sub-config values on top of the shared
tiny defaults, the special tokens of the family's tokenizer and which config ids they fill, and how the
family's real transformers processor is assembled (its class, its image / video / audio sub-processors
at the tiny geometry, its chat markup). :func:`build` turns a row into ``(model, processor)``.

Shared tiny geometry: a 2-layer LLM of width 64 (4 heads of 16, 2 KV heads), a 2-block vision tower of
width 32, 8-pixel patches, 64x64 frames. Rows only say what their family needs beyond that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from vcast.testing._tokenizer import byte_id, byte_tokenizer, chat_template, special_ids

HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 64, 2, 4, 2, 16
TEXT = dict(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
            num_key_value_heads=KV_HEADS, max_position_embeddings=32768, bos_token_id=None)
MROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]}  # 8 rotary freqs: t, h, w
QWEN_VISION = dict(depth=2, num_heads=2, patch_size=8, spatial_merge_size=2, temporal_patch_size=2, in_channels=3)
QWEN3_VISION = dict(QWEN_VISION, hidden_size=32, intermediate_size=64, out_hidden_size=HIDDEN, num_position_embeddings=64)
CLIP_VISION = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, image_size=64, patch_size=8, projection_dim=32)
PATCH, MERGE = 8, 2
FRAME_PIXELS = 64 * 64


@dataclass(frozen=True)
class Vocab:
    """The special tokens of a family's tokenizer (ids from 256, in order) and what the processor reads.

    Attributes:
        tokens: the special tokens; the first is eos and pad unless ``eos`` / ``pad`` say otherwise.
        named: ``{tokenizer attribute: token}`` (``image_token``, ``video_token``, ...).
        ids: ``{config key: token}``, the config's token ids (``video_token_id``, ...).
    """

    tokens: tuple[str, ...]
    named: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    eos: str | None = None
    pad: str | None = None
    bos: str | None = None

    @property
    def size(self) -> int:
        """Vocabulary size: 256 bytes + the special tokens, rounded up to a multiple of 16."""
        return -(-(256 + len(self.tokens)) // 16) * 16

    def id(self, token: str) -> int:
        return special_ids(self.tokens)[token]

    def config_ids(self) -> dict[str, int]:
        return {key: self.id(tok) for key, tok in self.ids.items()}

    def tokenizer(self):
        return byte_tokenizer(self.tokens, named=self.named, eos=self.eos, pad=self.pad, bos=self.bos)

    @property
    def eos_id(self) -> int:
        return self.id(self.eos or self.tokens[0])

    @property
    def pad_id(self) -> int:
        return self.id(self.pad or self.eos or self.tokens[0])


@dataclass(frozen=True)
class TinySpec:
    """One tiny model: its config (class names + values) and how to build its processor.

    Attributes:
        model_type: ``config.model_type``.
        config: the top-level config class name in ``transformers`` (``None`` with ``nest``: the inner config).
        vocab: the tokenizer's special tokens and the config ids they fill.
        text: text sub-config values on top of :data:`TEXT` (``None``: a flat config without ``text_config``).
        text_class: the text config class name (``None``: pass ``text`` as a dict).
        vision: vision sub-config values (a dict; the config class fills its defaults).
        extra: further top-level config values (sub-configs such as ``audio_config`` included).
        processor: ``(spec, config) -> processor``.
        model_class: the model class name in ``transformers`` (default: the image-text-to-text auto class).
        max_videos: videos per prompt the family's processor accepts (None: any number).
        nest: ``(key, config class name)``: the sub-configs and token ids go into this inner config, set on
            the top-level config under ``key`` (Qwen-Omni's ``thinker_config``); the talker is disabled.
    """

    model_type: str
    config: str | None
    vocab: Vocab
    processor: Callable[[TinySpec, Any], Any]
    text: dict | None = None
    text_class: str | None = None
    vision: dict | None = None
    extra: dict = field(default_factory=dict)
    model_class: str = "AutoModelForImageTextToText"
    nest: tuple[str, str] | None = None
    max_videos: int | None = None

    def build_config(self, **overrides):
        """The tiny config; ``overrides`` update the text sub-config (e.g. ``num_hidden_layers=3``)."""
        import transformers as tf

        ids = self.vocab.config_ids()
        text = {**TEXT, "vocab_size": self.vocab.size, "pad_token_id": self.vocab.pad_id,
                "eos_token_id": self.vocab.eos_id, **(self.text or {}), **overrides}
        text_cfg = getattr(tf, self.text_class)(**text) if self.text_class else text
        parts = {"text_config": text_cfg, **({"vision_config": dict(self.vision)} if self.vision is not None else {})}
        parts.update({k: (dict(v) if isinstance(v, dict) else v) for k, v in self.extra.items()})
        if self.nest is not None:
            inner = getattr(tf, self.nest[1])(**parts, **ids)
            if self.config is None:
                return inner
            return getattr(tf, self.config)(**{self.nest[0]: inner}, enable_audio_output=False)
        return getattr(tf, self.config)(**parts, **ids)


def _with_check(cls, **attrs):
    """``cls`` with :class:`~vcast.testing._processor_check.VideoProcessorCheck` mixed in (torch-only video
    processors are not registered as transformers' own) and class attributes ``attrs`` (e.g. call defaults)."""
    from vcast.testing._processor_check import VideoProcessorCheck

    return type(cls.__name__, (VideoProcessorCheck, cls), {"__module__": __name__, "__doc__": cls.__doc__, **attrs})


def _qwen_processor(processor_class: str, video: Callable[[], Any], image: Callable[[], Any], markup: dict):
    def make(spec: TinySpec, config):
        import transformers as tf

        return _with_check(getattr(tf, processor_class))(
            image_processor=image(), tokenizer=spec.vocab.tokenizer(), video_processor=video(),
            chat_template=chat_template(**markup))
    return make


def _qwen_image():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(size={"shortest_edge": (PATCH * MERGE) ** 2, "longest_edge": FRAME_PIXELS},
                                    patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2)


def _qwen3_video():
    from vcast.testing.qwen import TorchQwen3VLVideoProcessor

    return TorchQwen3VLVideoProcessor(size={"shortest_edge": (PATCH * MERGE) ** 2, "longest_edge": FRAME_PIXELS * 1024},
                                      cap_pixels_per_frame=False, min_frames=1, do_sample_frames=False,
                                      patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2)


def _glm_image():
    from transformers.models.glm4v.image_processing_pil_glm4v import Glm4vImageProcessorPil

    return Glm4vImageProcessorPil(size={"shortest_edge": (PATCH * MERGE) ** 2, "longest_edge": FRAME_PIXELS},
                                  patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2)


def _glm_video():
    from vcast.testing.video_ports import TorchGlm4vVideoProcessor

    return TorchGlm4vVideoProcessor(size={"shortest_edge": (PATCH * MERGE) ** 2, "longest_edge": 2 * FRAME_PIXELS * 64},
                                    do_sample_frames=False, patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2)


def _llava_next_video_processor(spec: TinySpec, config):
    from transformers import LlavaNextImageProcessorPil, LlavaNextVideoProcessor

    from vcast.testing.video_ports import TorchLlavaNextVideoVideoProcessor

    s = config.vision_config.image_size
    size, crop = {"shortest_edge": s}, {"height": s, "width": s}
    return _with_check(LlavaNextVideoProcessor)(
        video_processor=TorchLlavaNextVideoVideoProcessor(size=size, crop_size=crop),
        image_processor=LlavaNextImageProcessorPil(size=size, crop_size=crop,
                                                   image_grid_pinpoints=config.image_grid_pinpoints),
        tokenizer=spec.vocab.tokenizer(), patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy, num_additional_image_tokens=1,
        chat_template=chat_template(image="<image>\n", video="<video>\n"))


def _gemma4_processor(spec: TinySpec, config):
    try:
        from transformers import Gemma4Processor
    except (ImportError, ModuleNotFoundError) as err:  # transformers < 5.24 imports torchvision for Gemma4Processor
        from vcast.errors import UnsupportedModelError

        raise UnsupportedModelError(
            "the tiny gemma4 processor is transformers' Gemma4Processor, which needs torchvision in transformers "
            f"< 5.24 (seen in 5.20; 5.24 and 5.25 import without it): {err}. Install transformers >= 5.24 or "
            "torchvision.") from None
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    from vcast.testing.video_ports import TorchGemma4VideoProcessor

    vision = config.vision_config
    geometry = dict(patch_size=vision.patch_size, pooling_kernel_size=vision.pooling_kernel_size, max_soft_tokens=70)
    return _with_check(Gemma4Processor)(
        feature_extractor=Gemma4AudioFeatureExtractor(), image_processor=Gemma4ImageProcessorPil(**geometry),
        tokenizer=spec.vocab.tokenizer(), video_processor=TorchGemma4VideoProcessor(do_sample_frames=False, **geometry),
        image_seq_length=70, chat_template=chat_template(
            image="<|image|>", video="<|video|>", turn="<start_of_turn>{role}\n", end="<end_of_turn>\n"))


def _internvl_processor(spec: TinySpec, config):
    from transformers import InternVLProcessor
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    from vcast.testing.video_ports import TorchInternVLVideoProcessor

    s = config.vision_config.image_size[0]
    tokens = int((s // config.vision_config.patch_size[0]) ** 2 * config.downsample_ratio**2)
    return _with_check(InternVLProcessor)(
        image_processor=GotOcr2ImageProcessorPil(size={"height": s, "width": s}, crop_to_patches=False),
        tokenizer=spec.vocab.tokenizer(), video_processor=TorchInternVLVideoProcessor(size={"height": s, "width": s}),
        image_seq_length=tokens, chat_template=chat_template(image="<IMG_CONTEXT>\n", video="<video>\n"))


def _video_llama3_processor(spec: TinySpec, config):
    from transformers import VideoLlama3Processor
    from transformers.models.video_llama_3.image_processing_pil_video_llama_3 import (
        VideoLlama3ImageProcessorPil,
    )

    from vcast.testing.video_ports import TorchVideoLlama3VideoProcessor

    size = {"shortest_edge": (PATCH * MERGE) ** 2, "longest_edge": FRAME_PIXELS * 64}
    geometry = dict(patch_size=PATCH, merge_size=MERGE)
    return _with_check(VideoLlama3Processor)(
        image_processor=VideoLlama3ImageProcessorPil(size={"shortest_edge": (PATCH * MERGE) ** 2,
                                                           "longest_edge": FRAME_PIXELS}, **geometry),
        tokenizer=spec.vocab.tokenizer(), video_processor=TorchVideoLlama3VideoProcessor(size=size, **geometry),
        chat_template=chat_template(image="<|image_pad|>", video="<|video_pad|>"))


def _molmo2_processor(spec: TinySpec, config):
    from transformers import Molmo2Processor

    from vcast.testing.video_ports import TorchMolmo2ImageProcessor, TorchMolmo2VideoProcessor

    geometry = dict(size={"height": 64, "width": 64}, patch_size=PATCH, pooling_size=[2, 2])
    return _with_check(Molmo2Processor)(
        image_processor=TorchMolmo2ImageProcessor(max_crops=2, overlap_margins=[1, 1], **geometry),
        video_processor=TorchMolmo2VideoProcessor(do_sample_frames=False, **geometry),
        tokenizer=spec.vocab.tokenizer(), chat_template=chat_template(image="<|image|>", video="<|video|>"))


def _smolvlm_processor(spec: TinySpec, config):
    from transformers import SmolVLMProcessor
    from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE
    from transformers.utils import is_num2words_available

    if not is_num2words_available():  # SmolVLMProcessor spells the frame count out with it
        from vcast.errors import UnsupportedModelError

        raise UnsupportedModelError("the tiny smolvlm processor is transformers' SmolVLMProcessor, which needs the "
                                    "num2words package: pip install num2words (vcast's dev extra has it)")
    from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

    from vcast.testing.video_ports import TorchSmolVLMVideoProcessor

    side = config.vision_config.image_size
    tokens = (side // config.vision_config.patch_size) ** 2 // config.scale_factor**2
    return _with_check(SmolVLMProcessor)(
        image_processor=SmolVLMImageProcessorPil(size={"longest_edge": 2 * side}, max_image_size={"longest_edge": side}),
        video_processor=TorchSmolVLMVideoProcessor(size={"longest_edge": side}, max_image_size={"longest_edge": side}),
        tokenizer=spec.vocab.tokenizer(), image_seq_len=tokens, chat_template=DEFAULT_CHAT_TEMPLATE)


def _minicpmv_processor(spec: TinySpec, config):
    import transformers as tf
    from transformers.models.minicpmv4_6.image_processing_pil_minicpmv4_6 import MiniCPMV4_6ImageProcessorPil

    from vcast.testing.video_ports import TorchMiniCPMV4_6VideoProcessor

    # 64x64 frames above the 48 px slice resolution: each frame is an overview and 2 x 1 slices
    geometry = dict(patch_size=config.vision_config.patch_size, scale_resolution=48, max_slice_nums=4)
    processor_class = getattr(tf, {"minicpmv4_6": "MiniCPMV4_6Processor", "minicpmv4_7": "MiniCPMV4_7Processor"}[
        spec.model_type])
    return _with_check(processor_class)(
        image_processor=MiniCPMV4_6ImageProcessorPil(**geometry),
        video_processor=TorchMiniCPMV4_6VideoProcessor(do_sample_frames=False, **geometry),
        tokenizer=spec.vocab.tokenizer(), chat_template=chat_template(image="<|image_pad|>\n", video="<|video_pad|>\n"))


def _omni_processor(processor_class: str):
    def make(spec: TinySpec, config):
        import transformers as tf
        from transformers import WhisperFeatureExtractor

        from vcast.testing.qwen import TorchQwen2VLVideoProcessor

        class TinyOmniVideoProcessor(TorchQwen2VLVideoProcessor):
            """Keeps its own tiny ``size``: the Omni processors pass their 28-px-patch defaults into every call
            (from the processor's call defaults in transformers >= 5.24, from a module-level kwargs class
            before), which would give the tiny model 40x40-patch frames."""

            stock_name = "Qwen2VLVideoProcessor"

            def preprocess(self, videos, **kwargs):
                kwargs.pop("size", None)
                return super().preprocess(videos, **kwargs)

        size = {"shortest_edge": (PATCH * MERGE) ** 2, "longest_edge": FRAME_PIXELS}
        geometry = dict(patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2)
        return _with_check(getattr(tf, processor_class))(
            image_processor=_qwen_image(), feature_extractor=WhisperFeatureExtractor(feature_size=128),
            video_processor=TinyOmniVideoProcessor(size=size, cap_pixels_per_frame=False, do_sample_frames=False,
                                                   **geometry),
            tokenizer=spec.vocab.tokenizer(),
            chat_template=chat_template(image="<|vision_bos|><|IMAGE|><|vision_eos|>",
                                        video="<|vision_bos|><|VIDEO|><|vision_eos|>",
                                        audio="<|audio_bos|><|AUDIO|><|audio_eos|>"))
    return make


QWEN_VOCAB = Vocab(
    ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
     "<|image_pad|>", "<|video_pad|>"),
    named={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
           "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"},
    ids={"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>",
         "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"})
QWEN_MARKUP = dict(image="<|vision_start|><|image_pad|><|vision_end|>", video="<|vision_start|><|video_pad|><|vision_end|>")

GLM_VOCAB = Vocab(
    ("<|endoftext|>", "<|user|>", "<|assistant|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
     "<|end_of_video|>", "<|image|>", "<|video|>"),
    named={"image_token": "<|image|>", "video_token": "<|video|>"},
    ids={"image_token_id": "<|image|>", "video_token_id": "<|video|>", "image_start_token_id": "<|begin_of_image|>",
         "image_end_token_id": "<|end_of_image|>", "video_start_token_id": "<|begin_of_video|>",
         "video_end_token_id": "<|end_of_video|>"})
GLM_MARKUP = dict(image="<|begin_of_image|><|image|><|end_of_image|>", video="<|begin_of_video|><|video|><|end_of_video|>",
                  turn="<|{role}|>\n", end="")
GLM_TEXT = dict(rope_parameters=dict(MROPE, partial_rotary_factor=1.0))
GLM_VISION = dict(QWEN_VISION, hidden_size=32, intermediate_size=64, out_hidden_size=HIDDEN, image_size=64)

LLAVA_VOCAB = Vocab(("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"),
                    named={"image_token": "<image>", "video_token": "<video>"},
                    ids={"image_token_index": "<image>", "video_token_index": "<video>"})

QWEN35_TEXT = dict(head_dim=HEAD_DIM, rope_parameters=dict(MROPE, mrope_interleaved=True),
                   layer_types=["linear_attention", "full_attention"], linear_key_head_dim=HEAD_DIM,
                   linear_value_head_dim=HEAD_DIM, linear_num_key_heads=2, linear_num_value_heads=4)

GEMMA4_VOCAB = Vocab(
    ("<eos>", "<pad>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<|image|>",
     "<|video|>", "<start_of_audio>", "<end_of_audio>", "<|audio|>"),
    named={"image_token": "<|image|>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
           "audio_token": "<|audio|>", "boa_token": "<start_of_audio>", "eoa_token": "<end_of_audio>"},
    ids={"image_token_id": "<|image|>", "video_token_id": "<|video|>", "boi_token_id": "<start_of_image>",
         "eoi_token_id": "<end_of_image>", "audio_token_id": "<|audio|>", "boa_token_id": "<start_of_audio>",
         "eoa_token_index": "<end_of_audio>"},
    pad="<pad>", bos="<bos>")
GEMMA4_TEXT = dict(head_dim=HEAD_DIM, global_head_dim=HEAD_DIM, layer_types=["sliding_attention", "full_attention"],
                   sliding_window=4096, hidden_size_per_layer_input=16, vocab_size_per_layer_input=GEMMA4_VOCAB.size,
                   use_bidirectional_attention="vision", tie_word_embeddings=True)
GEMMA4_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=2, head_dim=16, patch_size=PATCH, pooling_kernel_size=2,
                     position_embedding_size=64)

INTERNVL_VOCAB = Vocab(("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
                       named={"start_image_token": "<img>", "end_image_token": "</img>",
                              "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"},
                       ids={"image_token_id": "<IMG_CONTEXT>"})
INTERNVL_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                       image_size=[64, 64], patch_size=[8, 8])

MOLMO2_VOCAB = Vocab(
    ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image|>", "<|video|>", "<im_patch>", "<im_col>", "<im_start>",
     "<low_res_im_start>", "<frame_start>", "<im_end>", "<frame_end>", "<im_low>"),
    named={"image_token": "<|image|>", "video_token": "<|video|>"},
    ids={"image_patch_id": "<im_patch>", "image_start_token_id": "<im_start>",
         "low_res_image_start_token_id": "<low_res_im_start>", "image_end_token_id": "<im_end>",
         "frame_start_token_id": "<frame_start>", "frame_end_token_id": "<frame_end>"})
MOLMO2_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=2, head_dim=16, image_size=[64, 64], patch_size=PATCH, num_position_embeddings=64)
MOLMO2_ADAPTER = dict(vision_feature_layer=[-1], hidden_size=32, num_attention_heads=2, num_key_value_heads=2,
                      head_dim=16, intermediate_size=64, text_hidden_size=HIDDEN)

SMOLVLM_VOCAB = Vocab(
    ("<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>", "<global-img>", "<image>",
     "<video>", *(f"<row_{r}_col_{c}>" for r in (1, 2) for c in (1, 2))),
    named={"image_token": "<image>", "video_token": "<video>", "fake_image_token": "<fake_token_around_image>",
           "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"},
    ids={"image_token_id": "<image>"})
SMOLVLM_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                      patch_size=PATCH)

MINICPMV_VOCAB = Vocab(
    ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<image>", "</image>", "<slice>",
     "</slice>", "<image_id>", "</image_id>"),
    named={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "image_start_token": "<image>",
           "image_end_token": "</image>", "slice_start_token": "<slice>", "slice_end_token": "</slice>",
           "image_id_start_token": "<image_id>", "image_id_end_token": "</image_id>"},
    ids={"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>"})
MINICPMV4_7_VOCAB = Vocab(MINICPMV_VOCAB.tokens, named=MINICPMV_VOCAB.named, ids={
    **MINICPMV_VOCAB.ids, "image_start_id": "<image>", "image_end_id": "</image>", "slice_start_id": "<slice>",
    "slice_end_id": "</slice>"})
MINICPMV_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=64,
                       patch_size=4)

OMNI_VOCAB = Vocab(
    ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_bos|>", "<|vision_eos|>", "<|audio_bos|>",
     "<|audio_eos|>", "<|IMAGE|>", "<|VIDEO|>", "<|AUDIO|>"),
    named={"image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "audio_token": "<|AUDIO|>",
           "vision_bos_token": "<|vision_bos|>", "vision_eos_token": "<|vision_eos|>",
           "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>"},
    ids={"image_token_id": "<|IMAGE|>", "video_token_id": "<|VIDEO|>", "audio_token_id": "<|AUDIO|>",
         "vision_start_token_id": "<|vision_bos|>", "vision_end_token_id": "<|vision_eos|>",
         "audio_start_token_id": "<|audio_bos|>", "audio_end_token_id": "<|audio_eos|>"})
OMNI_AUDIO = dict(num_mel_bins=128, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, d_model=32,
                  output_dim=HIDDEN, n_window=50)

def _omni(model_type: str, prefix: str, *, text: dict, vision: dict, audio: dict) -> tuple[TinySpec, TinySpec]:
    """The Qwen-Omni rows: the whole model (talker disabled) and the thinker alone (``<type>_thinker``)."""
    common = dict(vocab=OMNI_VOCAB, text=text, vision=vision, extra=dict(audio_config=audio),
                  nest=("thinker_config", f"{prefix}ThinkerConfig"), processor=_omni_processor(f"{prefix}Processor"))
    return (TinySpec(model_type, f"{prefix}Config", model_class=f"{prefix}ForConditionalGeneration", **common),
            TinySpec(f"{model_type}_thinker", None, model_class=f"{prefix}ThinkerForConditionalGeneration", **common))


SPECS: dict[str, TinySpec] = {spec.model_type: spec for spec in (
    TinySpec("qwen3_5", "Qwen3_5Config", QWEN_VOCAB, text=QWEN35_TEXT, text_class="Qwen3_5TextConfig",
             vision=QWEN3_VISION, processor=_qwen_processor("Qwen3VLProcessor", _qwen3_video, _qwen_image, QWEN_MARKUP)),
    TinySpec("qwen3_5_moe", "Qwen3_5MoeConfig", QWEN_VOCAB, text_class="Qwen3_5MoeTextConfig",
             text=dict(QWEN35_TEXT, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=HIDDEN,
                       shared_expert_intermediate_size=HIDDEN),
             vision=QWEN3_VISION, processor=_qwen_processor("Qwen3VLProcessor", _qwen3_video, _qwen_image, QWEN_MARKUP)),
    TinySpec("glm4v", "Glm4vConfig", GLM_VOCAB, text=GLM_TEXT, vision=GLM_VISION,
             processor=_qwen_processor("Glm4vProcessor", _glm_video, _glm_image, GLM_MARKUP)),
    TinySpec("glm4v_moe", "Glm4vMoeConfig", GLM_VOCAB, vision=GLM_VISION,
             text=dict(GLM_TEXT, head_dim=HEAD_DIM, moe_intermediate_size=HIDDEN, n_routed_experts=4,
                       num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1),
             processor=_qwen_processor("Glm4vProcessor", _glm_video, _glm_image, GLM_MARKUP)),
    TinySpec("glm46v", "Glm46VConfig", GLM_VOCAB, text=dict(GLM_TEXT, model_type="glm4v_text"), vision=dict(
        GLM_VISION, model_type="glm4v_vision"),
             processor=_qwen_processor("Glm46VProcessor", _glm_video, _glm_image, GLM_MARKUP)),
    TinySpec("llava_next_video", "LlavaNextVideoConfig", LLAVA_VOCAB, text=dict(model_type="qwen2", tie_word_embeddings=False),
             vision=CLIP_VISION, extra=dict(vision_feature_layer=-1, image_grid_pinpoints=[[64, 64], [64, 128],
                                                                                          [128, 64], [128, 128]]),
             processor=_llava_next_video_processor),
    TinySpec("gemma4", "Gemma4Config", GEMMA4_VOCAB, text=GEMMA4_TEXT, text_class="Gemma4TextConfig",
             vision=GEMMA4_VISION, extra=dict(audio_config=None), processor=_gemma4_processor),
    TinySpec("internvl", "InternVLConfig", INTERNVL_VOCAB, text=dict(model_type="qwen2", tie_word_embeddings=False),
             vision=INTERNVL_VISION, extra=dict(image_seq_length=16, tie_word_embeddings=False),
             processor=_internvl_processor),
    TinySpec("video_llama_3", "VideoLlama3Config", QWEN_VOCAB, text=dict(model_type="qwen2", tie_word_embeddings=False),
             vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         patch_size=PATCH), processor=_video_llama3_processor),
    TinySpec("molmo2", "Molmo2Config", MOLMO2_VOCAB, text=dict(head_dim=HEAD_DIM, additional_vocab_size=0),
             text_class="Molmo2TextConfig", vision=MOLMO2_VISION, extra=dict(adapter_config=MOLMO2_ADAPTER),
             processor=_molmo2_processor, max_videos=1),
    TinySpec("smolvlm", "SmolVLMConfig", SMOLVLM_VOCAB, text=dict(model_type="llama", head_dim=HEAD_DIM),
             vision=SMOLVLM_VISION, extra=dict(scale_factor=2), processor=_smolvlm_processor),
    TinySpec("minicpmv4_6", "MiniCPMV4_6Config", MINICPMV_VOCAB, text=QWEN35_TEXT, vision=MINICPMV_VISION,
             extra=dict(insert_layer_id=0), processor=_minicpmv_processor),
    TinySpec("minicpmv4_7", "MiniCPMV4_7Config", MINICPMV4_7_VOCAB, text=QWEN35_TEXT,
             vision=MINICPMV_VISION, extra=dict(insert_layer_id=0, newline_id=byte_id("\n")),
             processor=_minicpmv_processor),
    *_omni("qwen2_5_omni", "Qwen2_5Omni", text=dict(rope_parameters=MROPE), audio=OMNI_AUDIO,
           vision=dict(QWEN_VISION, hidden_size=32, intermediate_size=64, out_hidden_size=HIDDEN,
                       fullatt_block_indexes=[1], window_size=32)),
    *_omni("qwen3_omni_moe", "Qwen3OmniMoe", audio=dict(OMNI_AUDIO, downsample_hidden_size=16),
           text=dict(head_dim=HEAD_DIM, rope_parameters=dict(MROPE, mrope_interleaved=True), num_experts=4,
                     num_experts_per_tok=2, moe_intermediate_size=HIDDEN),
           vision=dict(QWEN3_VISION, deepstack_visual_indexes=[0, 1])),
)}


def build(spec: TinySpec, *, seed: int = 0, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa",
          **config_overrides):
    """``(model, processor)`` of ``spec``: seeded random weights, eval mode, ``dtype``."""
    import transformers as tf

    config = spec.build_config(**config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cls = getattr(tf, spec.model_class)
        make = cls.from_config if hasattr(cls, "from_config") and spec.model_class.startswith("Auto") else cls._from_config
        model = make(config, attn_implementation=attn_implementation)
    model = model.to(dtype).eval()
    if spec.nest is not None and spec.config is not None and hasattr(model, "speaker_map"):
        # Qwen2.5-Omni's generate() checks the speaker before it looks at the talker; real checkpoints load
        # their speakers from spk_dict.pt. The tiny model has no talker, so any name serves.
        model.speaker_map = {"Chelsie": {}}
    model.generation_config.pad_token_id = spec.vocab.pad_id
    model.generation_config.eos_token_id = spec.vocab.eos_id
    return model, spec.processor(spec, config)
