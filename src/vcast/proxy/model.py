"""The proxy Video LLM: transformers' own ``Qwen3VLForConditionalGeneration`` at a small size.

Nothing here re-implements the model: :func:`build_config` is a ``Qwen3VLConfig`` (a 2-block vision
tower with deepstack, a 3-layer Qwen3 LLM with interleaved MRoPE), and inputs go through the real
``Qwen3VLProcessor`` (with the real ``Qwen3VLVideoProcessor`` pixel pipeline run in plain torch, see
:mod:`vcast.testing.qwen`) and a tiny word-level tokenizer built in code.

Geometry: a clip of 16 frames of 128x128 gives an 8x8 grid of 16-px patches per frame pair
(temporal patch 2), merged 2x2 into 4x4 = 16 LLM tokens per temporal patch, 8 temporal patches:
128 video tokens per clip. Each temporal patch is preceded by its ``<t seconds>`` timestamp text,
as the Qwen3-VL processor lays it out.

The committed weights live in ``vcast/data/proxy/`` (``config.json`` + ``model.safetensors``);
:func:`load_model` reads them with ``from_pretrained``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vcast.errors import InputError
from vcast.proxy import tasks

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "data" / "proxy"

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
_QUESTION_WORDS = sorted({w for q in tasks.QUESTIONS.values() for w in q.split() if w not in ("{}",)})
_ANSWER_WORDS = sorted({a for answers in tasks.ANSWERS.values() for a in answers})
WORDS = tuple(dict.fromkeys(
    ["<unk>", "user", "assistant", "seconds", "<", ">", ".", *"0123456789", *_QUESTION_WORDS, *_ANSWER_WORDS]))
VOCAB_SIZE = 80  # len(SPECIAL_TOKENS) + len(WORDS), rounded up
TOKEN_ID = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + WORDS)}

# The Qwen3-VL chat template's rendering of one user turn holding a video and a question.
PROMPT = "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>{question}<|im_end|>\n<|im_start|>assistant\n"

PATCH_SIZE, MERGE_SIZE, TEMPORAL_PATCH = 16, 2, 2


def build_tokenizer():
    """A word-level ``PreTrainedTokenizerFast`` over :data:`SPECIAL_TOKENS` + :data:`WORDS` (ids in that order).

    Text splits on whitespace and punctuation, digits one by one, so the processor's timestamps
    ``<1.6 seconds>`` become ``< 1 . 6 seconds >``. ``<|endoftext|>`` is pad and eos; padding is on
    the left. Unknown words map to ``<unk>``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=dict(TOKEN_ID), unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"},
    )


def build_processor():
    """The real ``Qwen3VLProcessor`` for the proxy: 16-px patches, merge 2, temporal patch 2, no resizing.

    Frames must already be multiples of 32 px (the generator makes 128x128); frames are not sampled
    (every given frame is used) and timestamps come from the ``VideoMetadata`` that :func:`encode` passes.
    """
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from vcast.testing.qwen import TorchQwen3VLVideoProcessor, processor_class

    geometry = dict(patch_size=PATCH_SIZE, merge_size=MERGE_SIZE, temporal_patch_size=TEMPORAL_PATCH)
    video = TorchQwen3VLVideoProcessor(size={"shortest_edge": 32 * 32, "longest_edge": 256 * 256 * 64},
                                       do_resize=False, do_sample_frames=False, cap_pixels_per_frame=False,
                                       min_frames=1, **geometry)
    image = Qwen2VLImageProcessorPil(**geometry)
    return processor_class("qwen3_vl")(image_processor=image, tokenizer=build_tokenizer(), video_processor=video)


def build_config(**overrides: Any):
    """The proxy's ``Qwen3VLConfig``.

    Defaults: vision tower 2 blocks, width 64, 4 heads, deepstack from block 0, 64 learned position
    embeddings (an 8x8 grid); LLM 3 layers, width 128, 8 heads of 16 (4 KV heads), MRoPE sections
    ``[3, 3, 2]`` interleaved (0.83 M parameters in all). ``overrides`` may set ``vision_<field>`` / ``text_<field>`` entries.
    """
    from transformers import Qwen3VLConfig

    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, patch_size=PATCH_SIZE,
                  temporal_patch_size=TEMPORAL_PATCH, spatial_merge_size=MERGE_SIZE, in_channels=3,
                  num_position_embeddings=64, deepstack_visual_indexes=[0])
    text = dict(vocab_size=VOCAB_SIZE, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                num_attention_heads=8, num_key_value_heads=4, head_dim=16, max_position_embeddings=1024,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [3, 3, 2],
                                 "mrope_interleaved": True},
                pad_token_id=TOKEN_ID["<|endoftext|>"], eos_token_id=TOKEN_ID["<|endoftext|>"], bos_token_id=None)
    for key, value in overrides.items():
        part, _, field = key.partition("_")
        if part not in ("vision", "text") or not field:
            raise InputError(f"config override {key!r} must be 'vision_<field>' or 'text_<field>'")
        (vision if part == "vision" else text)[field] = value
    vision["out_hidden_size"] = text["hidden_size"]
    return Qwen3VLConfig(vision_config=vision, text_config=text, tie_word_embeddings=False,
                         image_token_id=TOKEN_ID["<|image_pad|>"], video_token_id=TOKEN_ID["<|video_pad|>"],
                         vision_start_token_id=TOKEN_ID["<|vision_start|>"],
                         vision_end_token_id=TOKEN_ID["<|vision_end|>"])


def build_model(seed: int = 0, **overrides: Any):
    """A freshly initialised ``Qwen3VLForConditionalGeneration`` (fp32, sdpa) from :func:`build_config`."""
    from transformers import Qwen3VLForConditionalGeneration

    config = build_config(**overrides)
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = TOKEN_ID["<|endoftext|>"]
    model.generation_config.eos_token_id = TOKEN_ID["<|endoftext|>"]
    return model


def save_model(model, out_dir: str | Path) -> Path:
    """Write ``config.json``, ``generation_config.json`` and ``model.safetensors`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    return out


def load_model(path: str | Path | None = None):
    """The trained proxy (default: the committed weights in :data:`WEIGHTS_DIR`), fp32, eval mode."""
    from transformers import Qwen3VLForConditionalGeneration

    path = WEIGHTS_DIR if path is None else Path(path)
    if not (path / "model.safetensors").is_file() or not (path / "config.json").is_file():
        raise InputError(f"no proxy weights in {path} (need config.json and model.safetensors); "
                         "train them with `vcast proxy train --out DIR`")
    return Qwen3VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()


def encode(processor, clips: list[tasks.Clip]):
    """Processor outputs for a batch of clips (left-padded).

    Returns a ``BatchFeature`` with ``input_ids`` / ``attention_mask`` / ``mm_token_type_ids``
    ``LongTensor[B, L]``, ``pixel_values_videos`` ``FloatTensor[B*T/2*8*8, 3*2*16*16]`` and
    ``video_grid_thw`` ``LongTensor[B, 3]`` (rows ``[T/2, 8, 8]``).
    """
    from transformers.video_utils import VideoMetadata

    if not clips:
        raise InputError("encode needs at least one clip")
    metadata = [VideoMetadata(total_num_frames=len(c.frames), fps=tasks.FPS, frames_indices=list(range(len(c.frames))),
                              height=c.frames.shape[1], width=c.frames.shape[2]) for c in clips]
    return processor(text=[PROMPT.format(question=c.question) for c in clips], videos=[c.frames for c in clips],
                     video_metadata=metadata, return_tensors="pt", padding=True)


def answer_ids(clips: list[tasks.Clip]) -> torch.Tensor:
    """``LongTensor[B]``: the token id of each clip's answer."""
    return torch.tensor([TOKEN_ID[c.answer] for c in clips])
