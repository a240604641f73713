"""A tiny random-weight LLaVA-OneVision (SigLIP tower + Qwen2 LLM) and a working offline processor.

Everything is built from configs in code: no download, no files. The processor is transformers'
``LlavaOnevisionProcessor`` (only its sub-processor class check relaxed, see ``VideoProcessorCheck``)
with the LLaVA-OneVision image processor (PIL backend) and video processor, scaled down to 64x64
frames, and a byte-level BPE tokenizer built with the ``tokenizers`` library (every byte is a
token, so any prompt encodes and decodes losslessly) plus the chat special tokens and the
``<image>`` / ``<video>`` placeholders.

transformers' video processors run their pixel ops with torchvision, and no torchvision build on
PyPI matches the CPU-only torch wheels; :class:`TorchLlavaOnevisionVideoProcessor` is the real
``LlavaOnevisionVideoProcessor`` with those ops (RGB conversion, bicubic resize, normalisation)
written in plain torch.

Shapes of the default tiny model: 64x64 frames, 8x8 patches -> an 8x8 patch grid per frame; the
projector maps it to the LLM width and ``apply_pooling`` halves each side, so each frame gives a
4x4 = 16-token grid, and a video of T frames gives ``16*T + 1`` tokens (the ``+1`` is the trailing
``image_newline``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.image_utils import ChannelDimension, PILImageResampling
from transformers.models.llava_onevision.video_processing_llava_onevision import LlavaOnevisionVideoProcessor
from transformers.video_utils import convert_to_rgb

from vcast.testing._processor_check import SavedAsStock, VideoProcessorCheck

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE_TOKEN, VIDEO_TOKEN)

# A Qwen2-style chat template for LLaVA-OneVision (one placeholder per image/video item).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'video' %}<video>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


_TORCH_MODES = {
    PILImageResampling.BICUBIC: "bicubic", PILImageResampling.BILINEAR: "bilinear", PILImageResampling.NEAREST: "nearest",
}


class TorchLlavaOnevisionVideoProcessor(SavedAsStock, LlavaOnevisionVideoProcessor):
    """transformers' ``LlavaOnevisionVideoProcessor`` with its pixel ops in plain torch (no torchvision).

    Same settings and ``BaseVideoProcessor`` pipeline (resize to ``size``, rescale, CLIP-normalise);
    only the torchvision kernels are replaced, by the torch calls torchvision's v2 functional ops
    make themselves: the resize is ``F.interpolate(..., antialias=True)`` (uint8-native on CPU),
    and normalize is ``(x - mean) / std``. Output: ``pixel_values_videos`` ``[num_videos, T, 3, H, W]``.
    It saves as ``LlavaOnevisionVideoProcessor`` (see ``SavedAsStock``).
    """


    def convert_to_rgb(self, video: torch.Tensor) -> torch.Tensor:
        """``[T, C, H, W]`` -> ``[T, 3, H, W]`` (grey replicated, alpha handled by transformers)."""
        if video.shape[-3] == 1:
            video = video.expand(*video.shape[:-3], 3, *video.shape[-2:])
        return convert_to_rgb(video, input_data_format=ChannelDimension.FIRST)

    def resize(self, image: torch.Tensor, size, resample=None, antialias: bool = True, **kwargs) -> torch.Tensor:
        """Resize ``[..., C, H, W]`` to ``(size.height, size.width)`` as torchvision's v2 resize does.

        uint8 stays uint8 through torch's native kernel on CPU (bicubic, and bilinear with AVX2) and
        goes through float with clamp-and-round elsewhere, like torchvision.
        """
        mode = _TORCH_MODES.get(resample if resample is not None else PILImageResampling.BILINEAR)
        if mode is None or not (size.height and size.width):
            raise ValueError(f"{type(self).__name__} supports height/width sizes and {list(_TORCH_MODES)}")
        if tuple(image.shape[-2:]) == (size.height, size.width):
            return image
        lead, dtype = image.shape[:-3], image.dtype
        native_uint8 = mode == "nearest" or (image.device.type == "cpu" and (
            mode == "bicubic" or torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")))
        x = image.reshape(-1, *image.shape[-3:])
        need_cast = dtype != torch.float32 and dtype != torch.float64 and not (dtype == torch.uint8 and native_uint8)
        if need_cast:
            x = x.float()
        extra = {} if mode == "nearest" else {"align_corners": False, "antialias": antialias}
        x = F.interpolate(x, size=(size.height, size.width), mode=mode, **extra)
        if need_cast:
            if mode == "bicubic" and dtype == torch.uint8:
                x = x.clamp_(0, 255)
            x = x.round_().to(dtype)
        return x.reshape(*lead, *x.shape[-3:])

    def normalize(self, image: torch.Tensor, mean, std, inplace: bool = False, **kwargs) -> torch.Tensor:
        """``(image - mean) / std`` per channel of ``[..., C, H, W]``."""
        mean = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        return image.sub_(mean).div_(std) if inplace else (image - mean) / std


def processor_class():
    """``LlavaOnevisionProcessor`` with :class:`VideoProcessorCheck` mixed in."""
    from transformers import LlavaOnevisionProcessor

    return type("LlavaOnevisionProcessor", (VideoProcessorCheck, LlavaOnevisionProcessor),
                {"__module__": __name__, "__doc__": LlavaOnevisionProcessor.__doc__})


def build_tokenizer():
    """A byte-level BPE ``PreTrainedTokenizerFast``: 256 byte tokens, then :data:`SPECIAL_TOKENS`.

    Ids: bytes are 0..255, ``<|endoftext|>`` 256 (pad and eos), ``<|im_start|>`` 257,
    ``<|im_end|>`` 258, ``<image>`` 259, ``<video>`` 260.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens={"image_token": IMAGE_TOKEN, "video_token": VIDEO_TOKEN},
    )


def tiny_llava_onevision_config(*, image_size: int = 64, patch_size: int = 8, vocab_size: int = 272):
    """A ``LlavaOnevisionConfig`` with a 2-layer SigLIP tower and a 2-layer Qwen2 LLM.

    ``image_grid_pinpoints`` are multiples of ``image_size`` so anyres images work at this scale.
    """
    from transformers import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

    tokenizer_ids = {t: 256 + i for i, t in enumerate(SPECIAL_TOKENS)}
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=patch_size, vision_use_head=False,
    )
    text = Qwen2Config(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
        eos_token_id=tokenizer_ids["<|endoftext|>"], pad_token_id=tokenizer_ids["<|endoftext|>"],
        bos_token_id=None, tie_word_embeddings=False,
    )
    s = image_size
    return LlavaOnevisionConfig(
        vision_config=vision, text_config=text,
        image_token_index=tokenizer_ids[IMAGE_TOKEN], video_token_index=tokenizer_ids[VIDEO_TOKEN],
        vision_feature_select_strategy="full", vision_feature_layer=-1,
        image_grid_pinpoints=[[s, s], [s, 2 * s], [2 * s, s], [2 * s, 2 * s]],
    )


def tiny_llava_onevision_processor(config=None):
    """A ``LlavaOnevisionProcessor`` for ``config`` (default :func:`tiny_llava_onevision_config`).

    It is transformers' class with one override: the sub-processor class check accepts the torch-only
    video processor (see :class:`VideoProcessorCheck`).
    """
    from transformers import LlavaOnevisionImageProcessorPil

    config = tiny_llava_onevision_config() if config is None else config
    s = config.vision_config.image_size
    size = {"height": s, "width": s}
    return processor_class()(
        image_processor=LlavaOnevisionImageProcessorPil(size=size, image_grid_pinpoints=config.image_grid_pinpoints),
        video_processor=TorchLlavaOnevisionVideoProcessor(size=size),
        tokenizer=build_tokenizer(),
        num_image_tokens=(s // config.vision_config.patch_size) ** 2,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        chat_template=CHAT_TEMPLATE,
        vision_aspect_ratio=config.vision_aspect_ratio,
    )


def tiny_llava_onevision(*, seed: int = 0, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa",
                         **config_overrides):
    """``(model, processor)``: a tiny random ``LlavaOnevisionForConditionalGeneration`` in eval mode.

    Args:
        seed: seeds the random weights (same seed, same model).
        dtype: parameter dtype.
        attn_implementation: ``"sdpa"`` or ``"eager"``.
        **config_overrides: passed to :func:`tiny_llava_onevision_config` (``image_size``, ``patch_size``).
    """
    from transformers import LlavaOnevisionForConditionalGeneration

    config = tiny_llava_onevision_config(**config_overrides)
    config._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaOnevisionForConditionalGeneration(config)
    model = model.to(dtype).eval()
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    return model, tiny_llava_onevision_processor(config)


def load_llava_onevision_processor(source: str, *, local_files_only: bool = False):
    """A saved LLaVA-OneVision processor (a local directory or a hub id), usable without torchvision.

    With torchvision installed this is ``AutoProcessor.from_pretrained``. Without it, transformers
    cannot build the video processor, so the processor is assembled from the same files with
    :class:`TorchLlavaOnevisionVideoProcessor` (same settings, torch pixel ops).
    """
    import importlib.util
    import json

    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
    from transformers.utils import cached_file

    kw = {"local_files_only": local_files_only}
    if importlib.util.find_spec("torchvision") is not None:
        return AutoProcessor.from_pretrained(source, **kw)
    path = cached_file(source, "processor_config.json", _raise_exceptions_for_missing_entries=False, **kw)
    options = {}
    if path is not None:
        with open(path) as f:
            options = {k: v for k, v in json.load(f).items() if not isinstance(v, dict)}
    tokenizer = AutoTokenizer.from_pretrained(source, **kw)
    return processor_class()(
        image_processor=AutoImageProcessor.from_pretrained(source, **kw),
        video_processor=TorchLlavaOnevisionVideoProcessor.from_pretrained(source, **kw),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
        **{k: options[k] for k in ("num_image_tokens", "vision_feature_select_strategy", "vision_aspect_ratio",
                                   "image_token", "video_token") if k in options},
    )
