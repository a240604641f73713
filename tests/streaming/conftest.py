"""Stream tests: one thread, no autograd, tiny models built once per session, shared helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vcast
import vcast.testing as vt
from vcast.errors import UnsupportedModelError

QUESTION = "What happens?"
FPS = 2.0
# what the offline processor call needs to give the prompt a stream has (VideoLLaMA3: no token compression)
PROCESSOR_KWARGS = {"video_llama_3": {"use_token_compression": False}}

_CACHE: dict = {}


def tiny(model_type: str, seed: int = 0, **overrides):
    """``(model, processor)`` cached per (type, seed, overrides); skips where this transformers cannot build it
    (5.20's Gemma4Processor imports torchvision)."""
    key = (model_type, seed, tuple(sorted(overrides.items())))
    if key not in _CACHE:
        try:
            _CACHE[key] = vt.tiny_model(model_type, seed=seed, **overrides)
        except UnsupportedModelError as err:
            pytest.skip(str(err))
    return _CACHE[key]


def _clip(frames: int = 14, seed: int = 3, size: int = 64) -> np.ndarray:
    return vcast.testing.random_video(frames, size, size, seed=seed, motion=3.0)


def _times(start: int, stop: int) -> list[float]:
    return [i / FPS for i in range(start, stop)]


def _feed(s, clip: np.ndarray, chunk: int, start: int = 0) -> list[dict]:
    return [s.add_frames(clip[i:i + chunk], timestamps=_times(start + i, start + min(i + chunk, len(clip))))
            for i in range(0, len(clip), chunk)]


def _offline(model, processor, clip, config=None, max_new_tokens=6):
    """``(last logits, greedy tokens, selection)`` of offline ``generate`` on the whole clip (pruned with
    ``config`` through ``vcast.enabled``; selection None unpruned)."""
    kwargs = PROCESSOR_KWARGS.get(model.config.model_type, {})
    inputs = vcast.testing.make_inputs(processor, QUESTION, videos=[clip], fps=FPS, **kwargs)
    if config is None:
        logits = model(**inputs).logits[0, -1]
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        return logits, out[0, inputs["input_ids"].shape[1]:].tolist(), None
    with vcast.enabled(model, config) as handle:
        logits = model(**inputs).logits[0, -1]
        selection = handle.selections[0]
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return logits, out[0, inputs["input_ids"].shape[1]:].tolist(), selection


def _until_eos(tokens: list[int], eos: int) -> list[int]:
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


@pytest.fixture(autouse=True)
def _one_thread_no_grad():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.no_grad():
        yield
    torch.set_num_threads(threads)
