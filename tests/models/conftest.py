"""Adapter tests: one thread, no autograd. ``tiny`` lives in ``tiny_cache`` (re-exported here)."""

from __future__ import annotations

import pytest
import torch
from tiny_cache import QWEN_TYPES, tiny  # noqa: F401


@pytest.fixture(autouse=True)
def _one_thread_no_grad():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.no_grad():
        yield
    torch.set_num_threads(threads)
