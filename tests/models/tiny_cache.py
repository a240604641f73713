"""Tiny models shared by the adapter tests, built once per session (tests must remove their hooks).

Also the KV cache under the name this transformers release uses: ``past_key_values`` up to 5.23,
``cache`` from 5.24 (the old name still works there, with a deprecation warning, until 5.40).
"""

from __future__ import annotations

import inspect

import pytest
from transformers import GenerationMixin

import vcast.testing as vt
from vcast.errors import UnsupportedModelError

QWEN_TYPES = ["qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl"]
CACHE_ARG = "cache" if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters \
    else "past_key_values"
_CACHE: dict = {}


def tiny(model_type: str, attn: str = "sdpa", seed: int = 0):
    """``(model, processor)`` cached per (type, attention, seed); a skip where this transformers release
    cannot build the tiny processor without torchvision (Gemma 4 before 5.24)."""
    key = (model_type, attn, seed)
    if key not in _CACHE:
        try:
            _CACHE[key] = vt.tiny_model(model_type, attn_implementation=attn, seed=seed)
        except UnsupportedModelError as err:
            if "torchvision" not in str(err):
                raise
            pytest.skip(str(err))
    return _CACHE[key]


def cache_of(out):
    """The KV cache of a forward or ``generate(return_dict_in_generate=True)`` output."""
    return out[CACHE_ARG]


def with_cache(cache) -> dict:
    """``{name: cache}`` to pass a cache back into a forward call."""
    return {CACHE_ARG: cache}
