"""The family-independent machinery: row plans, the adapter registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vcast.config import VCastConfig
from vcast.errors import UnsupportedModelError
from vcast.models import plan_rows, resolve_adapter, supported_model_types


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
