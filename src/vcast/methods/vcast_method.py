"""V-CAST (arXiv 2603.27650) as a registered method: the curvature-budgeted dual-anchor selection
of :mod:`vcast.core.select`. ``vcast-robust`` is the same with the shake-robust curvature.

``reproduce="authors"`` (``vcast`` only) runs the published code's behaviour instead:
:mod:`vcast.core.authors` lists, step by step, where it differs from the default and why the
default is what it is (in short: the published leftover loop gives every leftover token to one
frame, the arithmetic runs in the features' dtype, ties follow ``torch.topk``, and one-frame videos
are left unpruned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from vcast.config import VCastConfig
from vcast.core.select import select_tokens
from vcast.methods.registry import MethodSpec, register_method


@dataclass(frozen=True)
class VCastRobustConfig(VCastConfig):
    """V-CAST with ``curvature="robust"`` as its default (no ``reproduce=`` mode: the published code
    has only the angle curvature)."""

    method: ClassVar[str] = "vcast-robust"
    REPRODUCE_MODES: ClassVar[tuple[str, ...]] = ()
    curvature: Literal["angle", "robust"] = "robust"


def _every_frame(cfg: VCastConfig) -> bool:
    return cfg.min_tokens_per_frame >= 1


FLOOR_NOTE = "yes: every frame first gets min_tokens_per_frame (1); min_tokens_per_frame=0 lifts it"

register_method(MethodSpec(
    name="vcast",
    config_cls=VCastConfig,
    select=lambda features, cfg: select_tokens(features, cfg),
    select_batch=lambda videos, cfg: select_tokens(videos, cfg),
    summary="V-CAST: curvature-driven frame budgets + dual-anchor token scores (the paper)",
    keeps_every_frame=_every_frame,
    every_frame_note=FLOOR_NOTE + "; authors: the same floor (one-frame videos are kept whole)",
    native_auto=True,
))
register_method(MethodSpec(
    name="vcast-robust",
    config_cls=VCastRobustConfig,
    select=lambda features, cfg: select_tokens(features, cfg),
    select_batch=lambda videos, cfg: select_tokens(videos, cfg),
    summary="V-CAST with shake-robust (interpolation-residual) curvature",
    keeps_every_frame=_every_frame,
    every_frame_note=FLOOR_NOTE,
    native_auto=True,
))
