"""Model adapters: per-instance, reversible prefill pruning for transformers Video LLMs.

:mod:`vcast.models.base` holds the family-independent machinery and the adapter contract; each
family module registers its adapter for the ``config.model_type`` values it serves.
"""

from vcast.models.base import (
    DecodeState,
    ModelAdapter,
    RowPlan,
    VideoBatch,
    plan_rows,
    register_adapter,
    resolve_adapter,
    supported_model_types,
)

# Importing a family module registers its adapter.
from vcast.models import qwen_vl  # noqa: E402,F401  isort: skip
from vcast.models import llava_onevision  # noqa: E402,F401  isort: skip
from vcast.models import qwen3_vl_early  # noqa: E402,F401  isort: skip
from vcast.models import glm4v  # noqa: E402,F401  isort: skip
from vcast.models import internvl  # noqa: E402,F401  isort: skip
from vcast.models import gemma4  # noqa: E402,F401  isort: skip
from vcast.models import llava_next_video  # noqa: E402,F401  isort: skip
from vcast.models import video_llama_3  # noqa: E402,F401  isort: skip
from vcast.models import qwen_omni  # noqa: E402,F401  isort: skip
from vcast.models import molmo2  # noqa: E402,F401  isort: skip
from vcast.models import smolvlm  # noqa: E402,F401  isort: skip
from vcast.models import minicpmv  # noqa: E402,F401  isort: skip

__all__ = [
    "DecodeState",
    "ModelAdapter",
    "RowPlan",
    "VideoBatch",
    "plan_rows",
    "register_adapter",
    "resolve_adapter",
    "supported_model_types",
]
