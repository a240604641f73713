"""Stream tests: one thread, no autograd, tiny models built once per session."""

from __future__ import annotations

import pytest
import torch

import vcast.testing as vt

_CACHE: dict = {}


def tiny(model_type: str, seed: int = 0):
    """``(model, processor)`` cached per (type, seed)."""
    if (model_type, seed) not in _CACHE:
        _CACHE[model_type, seed] = vt.tiny_model(model_type, seed=seed)
    return _CACHE[model_type, seed]


@pytest.fixture(autouse=True)
def _one_thread_no_grad():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.no_grad():
        yield
    torch.set_num_threads(threads)
