"""Tiny models shared by the adapter tests, built once per session (tests must remove their hooks)."""

from __future__ import annotations

import vcast.testing as vt

QWEN_TYPES = ["qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl"]
_CACHE: dict = {}


def tiny(model_type: str, attn: str = "sdpa", seed: int = 0):
    """``(model, processor)`` cached per (type, attention, seed)."""
    key = (model_type, attn, seed)
    if key not in _CACHE:
        _CACHE[key] = vt.tiny_model(model_type, attn_implementation=attn, seed=seed)
    return _CACHE[key]
