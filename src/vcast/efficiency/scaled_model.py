"""The scaled-down random Qwen3-VL that :mod:`vcast.efficiency.measure` times, and its inputs.

``full`` has Qwen3-VL-2B's widths (vision 1024 / MLP 4096 / 16 heads; LLM 2048 / MLP 6144 / 16 query
and 8 KV heads of 128) and a third of its depth in the same proportion (8 vision blocks with 3
deepstack taps, 9 LLM layers); its clip is 16 frames of 448x448 through a real Qwen3-VL video
processor (patch 16, merge 2, temporal patch 2): 1568 video tokens. ``quick`` halves the widths, the
depth and the clip. Weights are random (seeded); the work per token is what matters here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ScaledPreset:
    """A scaled-down Qwen3-VL and its clip."""

    name: str
    vision_hidden: int
    vision_intermediate: int
    vision_heads: int
    vision_depth: int
    deepstack: tuple[int, ...]
    text_hidden: int
    text_intermediate: int
    text_heads: int
    text_kv_heads: int
    text_layers: int
    frames: int
    size: int
    max_new_tokens: int = 16


PRESETS = {
    # Qwen3-VL-2B's widths; its 24 : 28 vision : LLM depth at a third (deepstack taps 5, 11, 17 -> 2, 4, 6)
    "full": ScaledPreset(
        "qwen3-vl-2b-widths/8+9-layers",
        vision_hidden=1024,
        vision_intermediate=4096,
        vision_heads=16,
        vision_depth=8,
        deepstack=(2, 4, 6),
        text_hidden=2048,
        text_intermediate=6144,
        text_heads=16,
        text_kv_heads=8,
        text_layers=9,
        frames=16,
        size=448,
    ),
    # half the widths and the depth, half the clip: a smoke run under two minutes
    "quick": ScaledPreset(
        "qwen3-vl-half-widths/4+5-layers",
        vision_hidden=512,
        vision_intermediate=2048,
        vision_heads=8,
        vision_depth=4,
        deepstack=(1, 2, 3),
        text_hidden=1024,
        text_intermediate=3072,
        text_heads=8,
        text_kv_heads=4,
        text_layers=5,
        frames=8,
        size=448,
        max_new_tokens=8,
    ),
}


def build_scaled_model(
    preset: ScaledPreset,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    attn_implementation: str = "sdpa",
):
    """``(model, processor)``: a random Qwen3-VL with the preset's shape and a real Qwen3-VL processor
    (patch 16, merge 2, temporal patch 2) over vcast's offline byte-level tokenizer."""
    import transformers as tf

    from vcast.testing.qwen import TOKEN_ID, VOCAB_SIZE, TorchQwen3VLVideoProcessor, tiny_qwen_processor

    head_dim = 128
    mrope = [24, 20, 20]  # Qwen3-VL's (t, h, w) rotary split of head_dim 128
    pad = TOKEN_ID["<|endoftext|>"]
    text = tf.Qwen3VLTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=preset.text_hidden,
        intermediate_size=preset.text_intermediate,
        num_hidden_layers=preset.text_layers,
        num_attention_heads=preset.text_heads,
        num_key_value_heads=preset.text_kv_heads,
        head_dim=head_dim,
        max_position_embeddings=65536,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5e6,
            "mrope_section": mrope,
            "mrope_interleaved": True,
        },
        pad_token_id=pad,
        eos_token_id=pad,
        bos_token_id=None,
    )
    vision = dict(
        depth=preset.vision_depth,
        hidden_size=preset.vision_hidden,
        intermediate_size=preset.vision_intermediate,
        num_heads=preset.vision_heads,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=preset.text_hidden,
        num_position_embeddings=2304,
        deepstack_visual_indexes=list(preset.deepstack),
    )
    config = tf.Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=TOKEN_ID["<|image_pad|>"],
        video_token_id=TOKEN_ID["<|video_pad|>"],
        vision_start_token_id=TOKEN_ID["<|vision_start|>"],
        vision_end_token_id=TOKEN_ID["<|vision_end|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = tf.Qwen3VLForConditionalGeneration._from_config(
            config, attn_implementation=attn_implementation
        )
    model = model.to(device=device, dtype=dtype).eval()
    model.generation_config.pad_token_id = pad
    model.generation_config.eos_token_id = pad
    processor = tiny_qwen_processor("qwen3_vl")  # offline tokenizer and chat template; real geometry below
    side = preset.size
    processor.video_processor = TorchQwen3VLVideoProcessor(
        size={"shortest_edge": 32 * 32, "longest_edge": side * side * preset.frames},
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        cap_pixels_per_frame=False,
        min_frames=1,
        do_sample_frames=False,
    )
    return model, processor


def clip_inputs(processor, frames: int, size: int, device: str = "cpu", seed: int = 0):
    """Processor output for one synthetic ``frames x size x size`` clip and a short question."""
    from vcast.testing import make_inputs, random_video

    video = random_video(frames, size, size, seed=seed, motion=2.0)
    return make_inputs(processor, "What happens in this video?", videos=[video]).to(device)
