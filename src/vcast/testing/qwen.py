"""Tiny random-weight Qwen-VL models (Qwen3-VL dense/MoE, Qwen2.5-VL, Qwen2-VL) and offline processors.

Everything is built from configs in code: no download, no files. The processor is the real
``Qwen3VLProcessor`` / ``Qwen2_5_VLProcessor`` / ``Qwen2VLProcessor`` with:

- a byte-level BPE tokenizer built with the ``tokenizers`` library (every byte is a token, so any
  prompt encodes and decodes losslessly) plus the Qwen chat and vision special tokens;
- the real Qwen image processor (PIL backend) and the real Qwen video processors, subclassed only to
  run their three pixel operations (RGB conversion, bicubic resize, normalisation) with plain torch
  instead of torchvision, so they also work where no torchvision build matches the installed torch.

Default tiny geometry: 8x8 patches, spatial merge 2, temporal patch 2. A 64x64 frame becomes an
8x8 patch grid and 4x4 = 16 LLM tokens; a video of F frames gives ``ceil(F/2)`` temporal patches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import (
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ChannelDimension,
    PILImageResampling,
    SizeDict,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as frame_smart_resize
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
from transformers.video_utils import convert_to_rgb

from vcast.testing._processor_check import SavedAsStock, VideoProcessorCheck

QWEN_MODEL_TYPES = ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl")

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
TOKEN_ID = {tok: 256 + i for i, tok in enumerate(SPECIAL_TOKENS)}
VOCAB_SIZE = 272  # 256 bytes + 8 special tokens, rounded up

PATCH_SIZE = 8
MERGE_SIZE = 2
TEMPORAL_PATCH = 2
MIN_PIXELS = (PATCH_SIZE * MERGE_SIZE) ** 2  # one merged token
MAX_FRAME_PIXELS = 64 * 64  # per frame (Qwen2-VL family) ...
MAX_VIDEO_PIXELS = 64 * 64 * 1024  # ... and per video (Qwen3-VL counts all frames together)

# A Qwen-style chat template: each image/video item becomes <|vision_start|><|xxx_pad|><|vision_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class _TorchPixelOps(TorchvisionBackend):
    """Resize and normalise with plain torch (the torchvision backend's two tvF calls)."""

    def resize(self, image: torch.Tensor, size: SizeDict, resample=None, antialias: bool = True, **kwargs):
        """Bicubic (or bilinear) resize of ``image[..., C, H, W]`` to ``(size.height, size.width)``."""
        if not (size.height and size.width):
            raise ValueError(f"the torch-only resize needs an explicit height and width, got {size}")
        mode = "bilinear" if resample in (PILImageResampling.BILINEAR, 2) else "bicubic"
        lead = image.shape[:-3]
        x = image.reshape(-1, *image.shape[-3:]).float()
        x = F.interpolate(x, size=(size.height, size.width), mode=mode, antialias=antialias, align_corners=False)
        if image.dtype == torch.uint8:
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        return x.reshape(*lead, *x.shape[-3:])

    def normalize(self, image: torch.Tensor, mean, std, inplace: bool = False, **kwargs) -> torch.Tensor:
        """``(image - mean) / std`` per channel (channel dim -3)."""
        mean = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        return image.sub_(mean).div_(std) if inplace else (image - mean) / std


def _convert_to_rgb(video: torch.Tensor) -> torch.Tensor:
    if video.shape[-3] == 1:
        return video.expand(*video.shape[:-3], 3, *video.shape[-2:]).contiguous()
    return convert_to_rgb(video, input_data_format=ChannelDimension.FIRST)


class TorchQwen3VLVideoProcessor(SavedAsStock, Qwen3VLVideoProcessor, _TorchPixelOps):
    """The real ``Qwen3VLVideoProcessor`` with torch-only pixel ops (no torchvision needed).

    It saves as ``Qwen3VLVideoProcessor`` (see ``SavedAsStock``), its Qwen2 port as ``Qwen2VLVideoProcessor``.
    """


    def convert_to_rgb(self, video: torch.Tensor) -> torch.Tensor:
        return _convert_to_rgb(video)


class TorchQwen2VLVideoProcessor(TorchQwen3VLVideoProcessor):
    """Qwen2-VL / Qwen2.5-VL video preprocessing with torch-only pixel ops.

    transformers' ``Qwen2VLVideoProcessor`` module imports torchvision unconditionally, so its rules are
    rebuilt here on the shared Qwen3-VL code path (same patchify): its defaults (CLIP mean/std, 14 px
    patches, no frame sampling unless asked), ``min_pixels``/``max_pixels`` init keywords, frame
    sampling (a multiple of the temporal patch) and per-frame ``smart_resize`` with the optional
    total-video pixel cap.
    """

    size = {"shortest_edge": 128 * 28 * 28, "longest_edge": 28 * 28 * 768}
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    patch_size = 14
    do_sample_frames = False
    max_video_tokens = 128000
    fps = None

    def __init__(self, **kwargs):
        size = dict(kwargs.pop("size", None) or self.size)
        if (min_pixels := kwargs.pop("min_pixels", None)) is not None:
            size["shortest_edge"] = min_pixels
        if (max_pixels := kwargs.pop("max_pixels", None)) is not None:
            size["longest_edge"] = max_pixels
        super().__init__(size=size, **kwargs)

    def sample_frames(self, metadata, temporal_patch_size=None, min_frames=None, max_frames=None,
                      num_frames=None, fps=None, **kwargs):
        """Indices of ``num_frames`` (or ``fps``-rate) frames spread evenly, a multiple of the temporal patch."""
        if fps is not None and num_frames is not None:
            raise ValueError("`num_frames` and `fps` are mutually exclusive arguments, please use only one!")
        num_frames = self.num_frames if num_frames is None else num_frames
        fps = self.fps if fps is None else fps
        tps = temporal_patch_size or self.temporal_patch_size
        total = metadata.total_num_frames
        if num_frames is not None:
            num_frames = round(num_frames / tps) * tps
        elif fps is not None:
            if metadata.fps is None:
                raise ValueError("sampling at `fps` needs the video's fps in `video_metadata`")
            top = math.floor(min(max_frames or self.max_frames, total) / tps) * tps
            wanted = min(max(total / metadata.fps * fps, min_frames or self.min_frames), top, total)
            num_frames = math.floor(wanted / tps) * tps
        if num_frames is None:
            return torch.arange(total).int()
        if num_frames > total:
            raise ValueError(f"cannot sample {num_frames} frames from a {total}-frame video")
        return torch.arange(0, total, total / num_frames).int()

    def resize(self, videos: torch.Tensor, size: SizeDict, resample=None, factor: int = 28,
               temporal_factor: int = 2, cap_pixels_per_frame: bool | None = None, **kwargs):
        if size.height and size.width:  # called back from the shared path with an explicit size
            return _TorchPixelOps.resize(self, videos, size, resample)
        max_pixels = size.longest_edge
        if cap_pixels_per_frame:
            budget = int(self.max_video_tokens * factor * factor * 0.9) * temporal_factor // videos.shape[1]
            max_pixels = max(min(max_pixels, budget), int(size.shortest_edge * 1.05))
        height, width = frame_smart_resize(videos.shape[-2], videos.shape[-1], factor=factor,
                                           min_pixels=size.shortest_edge, max_pixels=max_pixels)
        return _TorchPixelOps.resize(self, videos, SizeDict(height=height, width=width), resample)

    def get_num_of_video_patches(self, num_frames: int, height: int, width: int, videos_kwargs=None):
        """Number of vision patches of a ``num_frames x height x width`` video (without the pixel cap)."""
        kw = videos_kwargs or {}
        size = kw.get("size") or self.size
        patch, merge = kw.get("patch_size") or self.patch_size, kw.get("merge_size") or self.merge_size
        tps = kw.get("temporal_patch_size") or self.temporal_patch_size
        h, w = frame_smart_resize(height, width, factor=patch * merge, min_pixels=size["shortest_edge"],
                                  max_pixels=size["longest_edge"])
        return -(-num_frames // tps) * (h // patch) * (w // patch)


def processor_class(model_type: str):
    """The real Qwen processor class of ``model_type``, accepting the torch-only video processors."""
    import transformers as tf

    base = {"qwen3_vl": tf.Qwen3VLProcessor, "qwen3_vl_moe": tf.Qwen3VLProcessor,
            "qwen2_5_vl": tf.Qwen2_5_VLProcessor, "qwen2_vl": tf.Qwen2VLProcessor}[model_type]
    return type(base.__name__, (VideoProcessorCheck, base), {"__module__": __name__, "__doc__": base.__doc__})




def build_tokenizer():
    """A byte-level BPE tokenizer: bytes are ids 0..255, then :data:`SPECIAL_TOKENS` from 256.

    ``<|endoftext|>`` (256) is pad and eos; padding is on the left (generation-ready).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(sorted(alphabet))}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens={
            "image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>",
        },
    )


def _text_kwargs(hidden: int, layers: int, heads: int, kv_heads: int, head_dim: int) -> dict:
    return dict(
        vocab_size=VOCAB_SIZE, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=32768,
        pad_token_id=TOKEN_ID["<|endoftext|>"], eos_token_id=TOKEN_ID["<|endoftext|>"], bos_token_id=None,
    )


def _token_ids() -> dict:
    return dict(
        image_token_id=TOKEN_ID["<|image_pad|>"], video_token_id=TOKEN_ID["<|video_pad|>"],
        vision_start_token_id=TOKEN_ID["<|vision_start|>"], vision_end_token_id=TOKEN_ID["<|vision_end|>"],
    )


def tiny_qwen_config(model_type: str, *, hidden_size: int = 64, num_layers: int = 2, vision_hidden: int = 32,
                     vision_depth: int = 2):
    """A tiny ``PreTrainedConfig`` of the given Qwen-VL ``model_type`` (2-layer LLM and vision tower).

    The LLM has 4 heads of dim 16 (2 KV heads); MRoPE sections ``[4, 2, 2]`` (t, h, w) split the 8
    rotary frequencies. The vision tower uses 8x8 patches, merge 2, temporal patch 2; Qwen3-VL's
    deepstack taps every vision block, Qwen2.5-VL uses one full-attention block and 2x2 windows.
    """
    import transformers as tf

    heads, kv_heads, head_dim = 4, 2, hidden_size // 4
    half = head_dim // 2
    mrope = [half - 2 * (half // 4), half // 4, half // 4]
    text = _text_kwargs(hidden_size, num_layers, heads, kv_heads, head_dim)
    vision = dict(depth=vision_depth, num_heads=2, patch_size=PATCH_SIZE, spatial_merge_size=MERGE_SIZE,
                  temporal_patch_size=TEMPORAL_PATCH, in_channels=3)
    if model_type in ("qwen3_vl", "qwen3_vl_moe"):
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope, "mrope_interleaved": True}
        vision.update(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, out_hidden_size=hidden_size,
                      num_position_embeddings=64, deepstack_visual_indexes=list(range(vision_depth)))
        if model_type == "qwen3_vl":
            return tf.Qwen3VLConfig(text_config=tf.Qwen3VLTextConfig(**text, head_dim=head_dim, rope_parameters=rope),
                                    vision_config=vision, **_token_ids())
        moe = tf.Qwen3VLMoeTextConfig(**text, head_dim=head_dim, rope_parameters=rope, num_experts=4,
                                      num_experts_per_tok=2, moe_intermediate_size=hidden_size,
                                      decoder_sparse_step=1, mlp_only_layers=[], tie_word_embeddings=False)
        return tf.Qwen3VLMoeConfig(text_config=moe, vision_config=vision, **_token_ids())
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope}
    if model_type == "qwen2_5_vl":
        vision.update(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden, out_hidden_size=hidden_size,
                      window_size=4 * PATCH_SIZE * MERGE_SIZE // 2, fullatt_block_indexes=[vision_depth - 1],
                      tokens_per_second=4)
        return tf.Qwen2_5_VLConfig(text_config=tf.Qwen2_5_VLTextConfig(**text, rope_parameters=rope),
                                   vision_config=vision, **_token_ids())
    if model_type == "qwen2_vl":
        vision.update(embed_dim=vision_hidden, hidden_size=hidden_size, mlp_ratio=2)
        return tf.Qwen2VLConfig(text_config=tf.Qwen2VLTextConfig(**text, rope_parameters=rope),
                                vision_config=vision, **_token_ids())
    raise ValueError(f"not a Qwen-VL model type: {model_type!r}; expected one of {QWEN_MODEL_TYPES}")


def tiny_qwen_processor(model_type: str):
    """The real Qwen processor of ``model_type`` at the tiny geometry, built offline."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    geometry = dict(patch_size=PATCH_SIZE, merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH)
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_FRAME_PIXELS}, **geometry)
    if model_type in ("qwen3_vl", "qwen3_vl_moe"):
        video_processor = TorchQwen3VLVideoProcessor(
            size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_VIDEO_PIXELS}, cap_pixels_per_frame=False,
            min_frames=1, do_sample_frames=False, **geometry)
    elif model_type in ("qwen2_5_vl", "qwen2_vl"):
        video_processor = TorchQwen2VLVideoProcessor(
            size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_FRAME_PIXELS}, cap_pixels_per_frame=False,
            do_sample_frames=False, **geometry)
    else:
        raise ValueError(f"not a Qwen-VL model type: {model_type!r}; expected one of {QWEN_MODEL_TYPES}")
    cls = processor_class(model_type)
    return cls(image_processor=image_processor, tokenizer=build_tokenizer(), video_processor=video_processor,
               chat_template=CHAT_TEMPLATE)


def tiny_qwen(model_type: str = "qwen3_vl", *, seed: int = 0, dtype: torch.dtype = torch.float32,
              attn_implementation: str = "sdpa", **config_overrides):
    """``(model, processor)``: a tiny random ``*ForConditionalGeneration`` of ``model_type`` in eval mode.

    Args:
        model_type: one of :data:`QWEN_MODEL_TYPES`.
        seed: seeds the random weights (same seed, same model).
        dtype: parameter dtype.
        attn_implementation: ``"sdpa"`` or ``"eager"``.
        **config_overrides: passed to :func:`tiny_qwen_config` (``hidden_size``, ``num_layers``, ...).
    """
    from transformers import AutoModelForImageTextToText

    config = tiny_qwen_config(model_type, **config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, attn_implementation=attn_implementation)
    model = model.to(dtype).eval()
    model.generation_config.pad_token_id = TOKEN_ID["<|endoftext|>"]
    model.generation_config.eos_token_id = TOKEN_ID["<|endoftext|>"]
    return model, tiny_qwen_processor(model_type)
