"""Tiny random-weight Video LLMs with working offline processors, for tests, demos and benchmarks.

::

    model, processor = vcast.testing.tiny_model("qwen3_vl")
    video = vcast.testing.random_video(8, 64, 64)
    inputs = vcast.testing.make_inputs(processor, "Describe the video.", videos=[video])
    model.generate(**inputs, max_new_tokens=8)

Nothing is downloaded: configs, weights (seeded random), tokenizer and processors are built in code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vcast.errors import UnsupportedModelError
from vcast.testing.table import SPECS, build

TINY_MODEL_TYPES = ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl", "llava_onevision", *SPECS)


def tiny_model(model_type: str = "qwen3_vl", *, seed: int = 0, dtype: torch.dtype = torch.float32,
               attn_implementation: str = "sdpa", **config_overrides):
    """``(model, processor)`` for ``model_type``: tiny random weights, eval mode, a working processor.

    The families beyond Qwen-VL and LLaVA-OneVision are rows of :data:`vcast.testing.table.SPECS`.

    Args:
        model_type: one of :data:`TINY_MODEL_TYPES` (``<omni type>_thinker``: the Qwen-Omni thinker alone).
        seed: seeds the random weights.
        dtype: parameter dtype (float32, float16, bfloat16).
        attn_implementation: ``"sdpa"`` or ``"eager"``.
        **config_overrides: family-specific size options (see :mod:`vcast.testing.qwen`,
            :mod:`vcast.testing.llava`).
    """
    kw = dict(seed=seed, dtype=dtype, attn_implementation=attn_implementation, **config_overrides)
    if model_type in ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl"):
        from vcast.testing.qwen import tiny_qwen

        return tiny_qwen(model_type, **kw)
    if model_type == "llava_onevision":
        from vcast.testing.llava import tiny_llava_onevision

        return tiny_llava_onevision(**kw)
    if model_type in SPECS:
        return build(SPECS[model_type], **kw)
    raise UnsupportedModelError(f"no tiny model for {model_type!r}; available: {list(TINY_MODEL_TYPES)}")


def random_video(num_frames: int, height: int = 64, width: int = 64, *, seed: int = 0,
                 motion: float = 1.0) -> np.ndarray:
    """A smooth synthetic clip, ``uint8[num_frames, height, width, 3]`` (a drifting colour pattern plus noise).

    Args:
        num_frames, height, width: clip shape.
        seed: RNG seed of the pattern and the noise.
        motion: how far the pattern drifts per frame (pixels); 0 gives a static clip with noise.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    freq = rng.uniform(0.05, 0.3, size=(3, 2))
    phase = rng.uniform(0, 2 * np.pi, size=3)
    t = np.arange(num_frames, dtype=np.float32)[:, None, None] * motion
    chans = [np.sin(freq[c, 0] * (xx + t) + freq[c, 1] * yy + phase[c]) for c in range(3)]
    frames = 127.5 + 100.0 * np.stack(chans, axis=-1) + rng.normal(0, 8, size=(num_frames, height, width, 3))
    return np.clip(frames, 0, 255).astype(np.uint8)


def random_image(height: int = 64, width: int = 64, *, seed: int = 0) -> np.ndarray:
    """A synthetic picture, ``uint8[height, width, 3]`` (one frame of :func:`random_video`)."""
    return random_video(1, height, width, seed=seed)[0]


def video_metadata(num_frames: int, fps: float = 2.0):
    """``transformers.video_utils.VideoMetadata`` for a clip of consecutive frames at ``fps``."""
    from transformers.video_utils import VideoMetadata

    return VideoMetadata(total_num_frames=num_frames, fps=fps, frames_indices=list(range(num_frames)))


def per_prompt_videos(processor, videos: Sequence, metadata: Sequence, counts: Sequence[int]) -> tuple[list, list]:
    """``(videos, video_metadata)`` as ``processor`` takes them for prompts holding ``counts`` of ``videos`` each, in
    order: one flat list, or one list per prompt for processors that count each prompt's videos (transformers 5.20's
    ``SmolVLMProcessor``; later releases take both)."""
    videos, metadata = list(videos), list(metadata)
    if not any(c.__name__ == "SmolVLMProcessor" for c in type(processor).__mro__):
        return videos, metadata
    edges = np.cumsum([0, *counts]).tolist()
    return ([videos[a:b] for a, b in zip(edges, edges[1:])], [metadata[a:b] for a, b in zip(edges, edges[1:])])


def make_inputs(processor, prompts: str | Sequence[str], *, videos: Sequence | None = None,
                images: Sequence | None = None, audios: Sequence | None = None, fps: float = 2.0,
                order: str = "media-first", **processor_kwargs):
    """Chat-formatted model inputs (a ``BatchFeature`` of tensors) for one prompt or a batch.

    Each prompt gets the next ``len(videos)/len(prompts)`` videos, images and audios likewise (images
    first, then videos, then audios, then the text). Batches are left-padded.

    Args:
        processor: a processor from :func:`tiny_model` (or a real one with a chat template).
        prompts: one text or a list of texts (the batch).
        videos: ``uint8[T, H, W, 3]`` arrays, split evenly over the prompts.
        images: ``uint8[H, W, 3]`` arrays, split evenly over the prompts.
        audios: ``float32[samples]`` waveforms at 16 kHz (Omni / Gemma 4 processors), split likewise.
        fps: frame rate written into each video's metadata (Qwen3-VL timestamps).
        order: ``"media-first"`` or ``"text-first"`` (text before the media in the user turn).
        **processor_kwargs: passed to the processor call (e.g. ``use_token_compression=False``).
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    videos, images, audios = list(videos or []), list(images or []), list(audios or [])
    nv, ni, na = (len(x) // len(prompts) for x in (videos, images, audios))
    if nv * len(prompts) != len(videos) or ni * len(prompts) != len(images) or na * len(prompts) != len(audios):
        raise ValueError("videos, images and audios must split evenly over the prompts")
    texts = []
    for prompt in prompts:
        media = [{"type": "image"}] * ni + [{"type": "video"}] * nv + [{"type": "audio"}] * na
        text = [{"type": "text", "text": prompt}]
        content = media + text if order == "media-first" else text + media
        texts.append(processor.apply_chat_template([{"role": "user", "content": content}],
                                                   add_generation_prompt=True, tokenize=False))
    kwargs = {}
    if videos:
        kwargs["videos"], kwargs["video_metadata"] = per_prompt_videos(
            processor, videos, [video_metadata(len(v), fps) for v in videos], [nv] * len(prompts))
    if images:
        kwargs["images"] = images
    if audios:
        kwargs["audio"] = audios
    return processor(text=texts, padding=True, return_tensors="pt", **kwargs, **processor_kwargs)
