"""The family-independent machinery: row plans, the adapter registry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from packaging.version import Version
from torch import nn

from vcast.config import VCastConfig
from vcast.errors import InputError, UnsupportedModelError
from vcast.models import plan_rows, resolve_adapter, supported_model_types
from vcast.models.base import (
    MIN_TRANSFORMERS,
    SUPPORTED_TRANSFORMERS,
    _check_is_prefill,
    check_transformers_version,
    find_cache,
)


def test_plan_rows_left_pads_and_keeps_order():
    keep = torch.tensor([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 1]], dtype=torch.bool)
    plan = plan_rows(keep)
    assert plan.length_before == 5 and plan.length_after == 5
    assert plan.dropped.tolist() == [2, 0, 3]
    x = torch.arange(15).view(3, 5) + 100
    out = plan.gather(x, fill=-1)
    assert out.tolist() == [[-1, -1, 100, 102, 103], [105, 106, 107, 108, 109], [-1, -1, -1, 112, 114]]
    assert plan.filled.tolist() == [[False, False, True, True, True], [True] * 5, [False, False, False, True, True]]


def test_plan_rows_identity_and_leading_dims():
    keep = torch.ones(2, 4, dtype=torch.bool)
    plan = plan_rows(keep)
    x = torch.randn(4, 2, 4)  # e.g. [text; t; h; w] position rows
    assert torch.equal(plan.gather(x), x)


def test_plan_rows_shrinks_to_longest_row():
    keep = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]], dtype=torch.bool)
    plan = plan_rows(keep)
    assert plan.length_after == 2
    assert plan.gather(torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])).tolist() == [[1, 4], [0, 6]]


class _Fake(nn.Module):
    def __init__(self, model_type):
        super().__init__()
        self.config = type("Cfg", (), {"model_type": model_type})()


def test_unsupported_model_names_the_supported_types():
    with pytest.raises(UnsupportedModelError) as err:
        resolve_adapter(_Fake("llama"), VCastConfig())
    for model_type in ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl"):
        assert model_type in str(err.value)
        assert model_type in supported_model_types()


def test_detection_uses_model_type_not_class():
    # A class the registry has never seen, with a supported model_type, resolves to the Qwen adapter.
    assert resolve_adapter(_Fake("qwen2_vl"), VCastConfig()).__name__ == "Qwen2VLAdapter"


class _Cache:
    """Stands in for a transformers Cache: all vcast reads is ``get_seq_length()``."""

    def __init__(self, length):
        self.length = length

    def get_seq_length(self):
        return self.length


@pytest.mark.parametrize("name", ["cache", "past_key_values", "cache_params", "some_future_name"])
def test_find_cache_reads_every_name(name):
    """5.20-5.23 pass ``past_key_values``, 5.24+ ``cache``; an unknown name is found by duck typing."""
    cache = _Cache(7)
    assert find_cache({"input_ids": torch.ones(1, 1), name: cache, "use_cache": True}) is cache
    assert find_cache({"input_ids": torch.ones(1, 1), "past_key_values": None, "use_cache": True}) is None


def test_a_decode_step_without_a_visible_cache_raises():
    step = {"input_ids": torch.ones(2, 1, dtype=torch.long), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    with pytest.raises(InputError, match="decode step whose KV cache vcast cannot"):
        _check_is_prefill(step, None)
    with pytest.raises(InputError, match="empty cache"):
        _check_is_prefill(step, _Cache(0))
    prefill = {"input_ids": torch.ones(2, 9, dtype=torch.long), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    _check_is_prefill(prefill, None)  # a prefill's mask is as wide as its tokens
    _check_is_prefill({"input_ids": torch.ones(2, 1, dtype=torch.long)}, None)  # no mask: nothing to compare


def test_supported_transformers_range():
    check_transformers_version()  # the installed release
    check_transformers_version(MIN_TRANSFORMERS)
    with pytest.raises(UnsupportedModelError, match=r"support transformers >=5\.20; transformers 5\.19\.1 is"):
        check_transformers_version("5.19.1")
    root = Path(__file__).parents[2]
    assert f'"transformers{SUPPORTED_TRANSFORMERS}"' in (root / "pyproject.toml").read_text()  # one range
    oldest = re.search(r"^OLDEST_TRANSFORMERS=(\S+)$", (root / ".ci" / "run").read_text(), re.M)
    assert oldest and Version(oldest.group(1)) == Version(MIN_TRANSFORMERS)  # CI tests the lower bound
