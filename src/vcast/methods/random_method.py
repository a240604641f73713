"""Random pruning: a seeded, content-free baseline.

Reference: the "Random" baseline of token-pruning studies, e.g. UniPruneBench (arXiv 2511.02650)
and V-CAST (Lin et al., arXiv 2603.27650), whose tables show random pruning scoring above several
published merging methods on Qwen3-VL.

What it does: keeps K = ``total_budget(T, N, retain_ratio)`` tokens drawn uniformly at random,
either from the whole video (``scope="video"``, the default; per-frame counts then vary) or with an
equal per-frame budget (``scope="frame"``, V-CAST's largest-remainder split on equal weights).
Pure pruning: kept tokens keep their original positions.

Faithfulness: there is no single paper algorithm; this is the plain uniform-subset baseline. The
draw uses a CPU ``torch.Generator`` seeded with ``config.seed`` (a permutation for ``"video"``,
random keys ranked per frame for ``"frame"``), so the selection depends only on (seed, T, N, scope)
and is identical on CPU and CUDA; every video of the same shape gets the same positions under one
seed. The draw is made on the host and copied to the device (no device-to-host sync).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from vcast.config import MethodConfig
from vcast.core.selection import Selection
from vcast.errors import ConfigError
from vcast.methods._common import (
    equal_budget,
    float_frames,
    frame_counts,
    kept_total,
    make_selection,
    mask_to_index,
    one_video,
    topk_mask,
)
from vcast.methods.registry import MethodSpec, register_method


@dataclass(frozen=True)
class RandomConfig(MethodConfig):
    """Random pruning options.

    Attributes:
        scope: ``"video"`` draws K tokens from all T*N; ``"frame"`` gives every frame an equal
            budget and draws within each frame.
        seed: (inherited) the generator seed; the selection is a pure function of it.
    """

    method: ClassVar[str] = "random"

    scope: Literal["video", "frame"] = "video"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scope not in ("video", "frame"):
            raise ConfigError(f"scope must be 'video' or 'frame', got {self.scope!r}")


def select_random(features: torch.Tensor, config: RandomConfig) -> Selection:
    """Keep K uniformly random tokens of one video.

    Args:
        features: ``Tensor[T, N, D]`` (only its shape is used, plus a finiteness check).
        config: a :class:`RandomConfig`.

    Returns:
        A :class:`Selection` with zeros as the frame score.
    """
    x = one_video(features)
    float_frames(x)  # NaN/inf check, like every other method
    t, n, _ = x.shape
    k = kept_total(t, n, config.retain_ratio)
    gen = torch.Generator().manual_seed(config.seed)
    if config.scope == "video":
        keep = torch.sort(torch.randperm(t * n, generator=gen)[:k]).values.to(x.device)
        budget = frame_counts(keep, t, n)
        return make_selection(keep, budget, t, n)
    keys = torch.rand(t, n, generator=gen).to(x.device)
    budget = equal_budget(x, k)
    return make_selection(mask_to_index(topk_mask(keys, budget), k), budget, t, n)


register_method(MethodSpec(
    name="random",
    config_cls=RandomConfig,
    select=select_random,
    summary="Random: K uniformly random tokens (seeded; whole video or equal per-frame budget)",
    keeps_every_frame=lambda cfg: cfg.scope == "frame",
    every_frame_note="scope='frame': yes (equal budgets, at least one each); scope='video' (default): no, a "
                     "uniform draw over the video can miss a frame",
))
