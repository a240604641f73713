"""V-CAST (arXiv 2603.27650) as a registered method: the curvature-budgeted dual-anchor selection
of :mod:`vcast.core.select`. ``vcast-robust`` is the same with the shake-robust curvature."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from vcast.config import VCastConfig
from vcast.core.select import select_tokens
from vcast.methods.registry import MethodSpec, register_method


@dataclass(frozen=True)
class VCastRobustConfig(VCastConfig):
    """V-CAST with ``curvature="robust"`` as its default."""

    method: ClassVar[str] = "vcast-robust"
    curvature: Literal["angle", "robust"] = "robust"


register_method(MethodSpec(
    name="vcast",
    config_cls=VCastConfig,
    select=lambda features, cfg: select_tokens(features, cfg),
    select_batch=lambda videos, cfg: select_tokens(videos, cfg),
    summary="V-CAST: curvature-driven frame budgets + dual-anchor token scores (the paper)",
))
register_method(MethodSpec(
    name="vcast-robust",
    config_cls=VCastRobustConfig,
    select=lambda features, cfg: select_tokens(features, cfg),
    select_batch=lambda videos, cfg: select_tokens(videos, cfg),
    summary="V-CAST with shake-robust (interpolation-residual) curvature",
))
