"""What pruning saves: analytic prefill FLOPs / KV-cache bytes of real model configurations, and
measured latency / memory ratios of a scaled-down random model (vanilla vs pruned in one run).

Quick use::

    from vcast.efficiency import compare
    r = compare("qwen3-vl-8b", frames=64, retain_ratio=0.25, prune_at="vision:6")
    r["total_prefill_flops_ratio"], r["kv_cache_ratio"]
"""

from __future__ import annotations

from vcast.efficiency.analytic import (
    VideoGeometry,
    compare,
    cost_ratios,
    default_vision_block,
    prefill_cost,
    video_geometry,
)
from vcast.efficiency.model_specs import (
    MODEL_SPECS,
    ModelSpec,
    TextSpec,
    VisionSpec,
    get_spec,
    spec_from_hf_config,
)

__all__ = [
    "MODEL_SPECS",
    "ModelSpec",
    "TextSpec",
    "VideoGeometry",
    "VisionSpec",
    "compare",
    "cost_ratios",
    "default_vision_block",
    "get_spec",
    "prefill_cost",
    "spec_from_hf_config",
    "video_geometry",
]
