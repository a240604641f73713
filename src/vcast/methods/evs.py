"""EVS: NVIDIA Efficient Video Sampling, the video-token pruning built into vLLM.

Reference: Bagrov et al., "Efficient Video Sampling: Pruning Temporally Redundant Tokens for
Faster VLM Inference", arXiv 2510.14624; the implementation we follow is vLLM's
``vllm/multimodal/evs.py`` (``compute_retention_mask``), enabled there by
``--video-pruning-rate q`` (also in SGLang and TensorRT-LLM for Nemotron-Nano-VL-V2).

What it does, as in vLLM: every token gets the dissimilarity ``1 - cos(x[t, p], x[t-1, p])`` to
the token at the same grid position p of the previous frame; the first frame gets a score above
any dissimilarity so it is kept whole; the K highest-scoring tokens of the whole video are kept
(global ranking, ties to the lower flat index, as vLLM's stable descending argsort). Static
positions are dropped first. Pure pruning: kept tokens keep their original positions.

Ratio mapping: vLLM's pruning rate q removes a fraction q, so ``retain_ratio = 1 - q``. vLLM keeps
``max(N, int(T*N*(1-q)))`` tokens; by default we keep exactly ``K = total_budget(T, N,
retain_ratio)`` (Python ``round``) like every vcast method, so the counts differ: by a token where
vLLM's ``int`` floors (or ``1 - (1 - r)`` rounds below r), and by up to ``N - K`` tokens when K < N
(``retain_ratio < 1/T``, short clips at low ratios), where vLLM keeps the whole first frame anyway
and vcast's first frame keeps K evenly spaced tokens instead (the budget holds). Whenever the counts
agree, the kept set equals vLLM's mask up to the order of near-equal scores (float32 here, the
embedding dtype and eps 1e-8 there): 273 of 276 such cases in ``benchmarks/reproduce_agreement.py``.

``reproduce="vllm"``: exactly vLLM's ``compute_retention_mask`` (``vllm/multimodal/video_prune/
evs.py``, read at d750efb), at ``video_pruning_rate q = 1 - retain_ratio``, differing from the
default line by line:

- the count is vLLM's ``max(N, int(T*N*(1 - q)))`` with q computed as ``1 - retain_ratio`` in
  float (so ``retain_ratio=0.1`` floors ``T*N*0.09999999999999998``); default: ``round(T*N*r)``;
- the first frame is always kept whole (score 255), even above the budget; default: see above;
- the cosine (``F.cosine_similarity``, eps 1e-8) and ``1 - cos`` run in the features' dtype (bf16
  on real checkpoints, where many scores tie); default: float32, eps 1e-6 on the norm product;
- ties: both rank with a stable descending sort (lower flat index first), so equal scores resolve
  the same way; only the dtype of the scores differs.

The EVS *authors'* code is this one (the vLLM file is NVIDIA's), so there is no separate
``"authors"`` mode.

Faithfulness: the similarity is computed in float32 (vLLM computes it in the embedding dtype,
e.g. bf16, so near-ties may order differently). The paper's optional uptraining is not part of a
training-free library. The frame score reported as ``curvature`` is each frame's mean dissimilarity
to the previous frame (0 for frame 0). Vectorised; no host sync beyond the finiteness check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from vcast.config import MethodConfig
from vcast.core.selection import Selection
from vcast.methods._common import (
    colocated_cosine,
    evenly_spaced_mask,
    float_frames,
    frame_counts,
    kept_total,
    make_selection,
    mask_to_index,
    one_video,
)
from vcast.methods.registry import MethodSpec, register_method

# Score of first-frame tokens: above any dissimilarity (which lies in [0, 2]); vLLM uses 255.
FIRST_FRAME_SCORE = 255.0


@dataclass(frozen=True)
class EVSConfig(MethodConfig):
    """EVS has no options beyond :class:`~vcast.config.MethodConfig` (``retain_ratio = 1 - q``)."""

    method: ClassVar[str] = "evs"
    REPRODUCE_MODES: ClassVar[tuple[str, ...]] = ("vllm",)


def evs_dissimilarity(xf: torch.Tensor) -> torch.Tensor:
    """``FloatTensor[T, N]``: ``1 - cos`` of each token to the previous frame's token at the same
    position; the first frame gets :data:`FIRST_FRAME_SCORE`.

    Args:
        xf: ``FloatTensor[T, N, D]``.
    """
    first = torch.full_like(xf[:1, :, 0], FIRST_FRAME_SCORE)
    norms = torch.linalg.vector_norm(xf, dim=-1)
    return torch.cat([first, 1.0 - colocated_cosine(xf, norms, 1)], dim=0)


def vllm_kept_count(frames: int, tokens: int, retain_ratio: float) -> int:
    """vLLM's EVS count at ``q = 1 - retain_ratio``: ``max(N, int(T*N*(1 - q)))``."""
    q = 1.0 - retain_ratio
    return max(tokens, int(frames * tokens * (1 - q)))


def select_evs_vllm(x: torch.Tensor, config: EVSConfig) -> Selection:
    """EVS exactly as vLLM's ``compute_retention_mask`` (module docstring, ``reproduce="vllm"``)."""
    float_frames(x)  # vcast's NaN/inf guard (vLLM has none)
    t, n, _ = x.shape
    sim = F.cosine_similarity(x[1:], x[:-1], dim=-1)  # features' dtype, eps 1e-8 as in vLLM
    score = torch.cat([FIRST_FRAME_SCORE * torch.ones_like(x[:1, :, 0]), 1 - sim])
    order = torch.argsort(score.reshape(-1), descending=True, stable=True)
    keep = torch.sort(order[: vllm_kept_count(t, n, config.retain_ratio)]).values
    budget = frame_counts(keep, t, n)
    frame_score = torch.cat([torch.zeros(1, device=x.device), (1 - sim).float().mean(dim=1)])
    return make_selection(keep, budget, t, n, curvature=frame_score)


def select_evs(features: torch.Tensor, config: EVSConfig) -> Selection:
    """Keep the K tokens that changed most since the previous frame (first frame whole).

    Args:
        features: ``Tensor[T, N, D]``.
        config: an :class:`EVSConfig`.

    Returns:
        A :class:`Selection`; ``curvature`` is the mean dissimilarity of each frame.
    """
    x = one_video(features)
    if config.reproduce == "vllm":
        return select_evs_vllm(x, config)
    xf, _ = float_frames(x)
    t, n, _ = x.shape
    k = kept_total(t, n, config.retain_ratio)
    score = evs_dissimilarity(xf)
    frame_score = torch.cat([torch.zeros(1, device=x.device), score[1:].mean(dim=1)])
    if k < n:  # the first frame cannot be kept whole: K evenly spaced tokens of it
        first = evenly_spaced_mask(torch.tensor([k], device=x.device), n)[0]
        keep = mask_to_index(first, k)
        budget = torch.zeros(t, dtype=torch.long, device=x.device)
        budget[0] = k
        return make_selection(keep, budget, t, n, curvature=frame_score)
    order = torch.sort(score.reshape(-1), descending=True, stable=True).indices
    keep = torch.sort(order[:k]).values
    budget = frame_counts(keep, t, n)
    return make_selection(keep, budget, t, n, curvature=frame_score)


register_method(MethodSpec(
    name="evs",
    config_cls=EVSConfig,
    select=select_evs,
    summary="EVS (NVIDIA, vLLM): drop tokens least changed since the previous frame; frame 0 whole",
    every_frame_note="no: one ranking over the whole video, so frames that barely change can lose every "
                     "token (EVS's design; vllm mode too)",
))
