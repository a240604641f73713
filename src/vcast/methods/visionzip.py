"""VisionZip: dominant tokens plus merged contextual tokens, per frame.

Reference: Yang, Chen, Tian, Wang, Li, Yu, Jia, "VisionZip: Longer is Better but Not Necessary in
Vision Language Models", CVPR 2025, arXiv 2412.04467; official code ``dvlab-research/VisionZip``
(``pip install visionzip``; LLaVA-1.5 settings dominant/contextual = 54/10, 108/20, 162/30).

What it does, per frame with budget ``k_t`` (K split equally over frames, largest remainder):

1. Dominant tokens: the ``d_t = k_t - c_t`` highest-scoring tokens, ``c_t = round(k_t * (1 -
   dominant_fraction))``; the default fraction 27/32 reproduces the paper's 54/10, 108/20 and
   162/30 splits.
2. Contextual tokens: of the ``N - d_t`` remaining tokens (in index order), every ``step``-th,
   ``step = max(1, (N - d_t) // c_t)``, the first ``c_t`` of them, are targets; every other
   remaining token joins the target it is most similar to (cosine), and each contextual token is
   the mean of its target and its members, ``(target + sum(members)) / (1 + count)``. The official
   code forms ``target + mean(members)`` instead (``reproduce="authors"`` does): a sum of two
   tokens, about twice a token's norm when members resemble their target. The default keeps the
   merged token a token-sized average, in the range of the features the LLM was trained on, as
   token merging (ToMe) does; the grouping is the official one either way.

How "dominant" is scored without a [CLS] token or attention maps: VisionZip ranks tokens by the
[CLS] attention of the vision encoder's last layer; post-merger Qwen/LLaVA-OV video tokens have
neither, and the contract passes features only. ``dominant_score="norm"`` (default) ranks by
``||x_i||``, the proxy of the VidCom2 ``qwen``-branch port that produced V-CAST's VisionZip numbers on
Qwen3-VL. ``dominant_score="mean_query"`` ranks by ``x_i . mean_t``, the softmax attention a
parameter-free [CLS]-like query (the frame's mean token) gives each token; it was the default until
it was measured on the trained proxy Qwen3-VL (``vcast bench accuracy``): it keeps the most
frame-typical (background) tokens, and at ratio 0.5 on 20 test clips per family accuracy fell to 0.35
(unpruned 0.75) while ``"norm"`` kept 0.80, so the default no longer makes a straw man of the method.

Positions: dominant tokens keep their own; a contextual token sits at its target's original grid
position. ``merged_features`` holds originals for dominant tokens and means for contextual ones.

Faithfulness: the official method runs inside the vision encoder on one image, uses the encoder's
attention and keys (we use the post-merger features for both) and keeps the [CLS] token (there is
none here). The retain ratio is the fraction of video tokens reaching the LLM, split equally over
frames as the official per-frame setting does. Vectorised over frames; no host sync beyond the
finiteness check.

``reproduce="authors"``: ``CLIPVisionTower_VisionZip.forward`` of ``dvlab-research/VisionZip``
(``visionzip/clip_encoder.py``, read at 3151f6d) on the features, line by line against the default:

- counts: every frame keeps the same ``k = round(N*r)`` (at least 1) tokens, ``c = round(k * (1 -
  dominant_fraction))`` contextual and ``k - c`` dominant, as the official fixed per-image
  ``(dominant, contextual)`` setting (its ``dominant`` counts the [CLS] token, which post-merger
  video tokens lack); so K = ``T * k``, not ``round(T*N*r)``. Default: K split equally over frames;
- dominant tokens by ``torch.topk`` of the importance score (``dominant_score``, in the features'
  dtype; the official score is the [CLS] attention, which does not exist here), ties as PyTorch
  orders them; default: float32, ties to the lower index;
- contextual tokens: the tokens normalised by ``x / ||x||`` (no eps), assignment by ``argmax`` of
  their dot products with the normalised targets (first maximum), merged as ``target +
  mean(members)`` in the features' dtype; default: the average above, float32;
- ``c = 0`` (a small k at a large ``dominant_fraction``) raises :class:`~vcast.errors.ReproduceError`:
  the official step ``(N - d) // c`` divides by zero;
- not reproducible in a Selection: the official output puts the dominant tokens first and the
  contextual ones after them; here both sit at their grid positions, in grid order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from vcast.config import MethodConfig
from vcast.core.curvature import EPS
from vcast.core.selection import Selection
from vcast.errors import ConfigError, ReproduceError
from vcast.methods._common import (
    equal_budget,
    equal_split,
    float_frames,
    kept_total,
    make_selection,
    mask_to_index,
    one_video,
    topk_mask,
)
from vcast.methods.registry import MethodSpec, register_method


@dataclass(frozen=True)
class VisionZipConfig(MethodConfig):
    """VisionZip options.

    Attributes:
        dominant_fraction: share of each frame's budget kept as dominant tokens, in (0, 1]; the
            rest are contextual (merged) tokens. 27/32 = the paper's 54/10 split.
        dominant_score: ``"norm"`` (default, token norm) or ``"mean_query"`` (attention of the frame-mean query).
    """

    method: ClassVar[str] = "visionzip"
    REPRODUCE_MODES: ClassVar[tuple[str, ...]] = ("authors",)

    dominant_fraction: float = 54 / 64
    dominant_score: Literal["mean_query", "norm"] = "norm"

    def __post_init__(self) -> None:
        super().__post_init__()
        f = self.dominant_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or not 0 < f <= 1:
            raise ConfigError(f"dominant_fraction must be in (0, 1], got {f!r}")
        if self.dominant_score not in ("mean_query", "norm"):
            raise ConfigError(f"dominant_score must be 'mean_query' or 'norm', got {self.dominant_score!r}")


def importance(xf: torch.Tensor, means: torch.Tensor, how: str) -> torch.Tensor:
    """``FloatTensor[T, N]`` token importance without attention maps (see the module docstring).

    Args:
        xf: ``FloatTensor[T, N, D]``.
        means: ``FloatTensor[T, D]`` frame means.
        how: ``"mean_query"`` or ``"norm"``.
    """
    if how == "norm":
        return torch.linalg.vector_norm(xf, dim=-1)
    return torch.bmm(means.unsqueeze(1), xf.transpose(1, 2)).squeeze(1)


def select_visionzip_authors(x: torch.Tensor, config: VisionZipConfig) -> Selection:
    """VisionZip as the official encoder patch selects and merges (module docstring, ``"authors"``)."""
    t, n, d = x.shape
    dev = x.device
    per_frame = kept_total(1, n, config.retain_ratio)
    ctx = round(per_frame * (1.0 - config.dominant_fraction))
    dom = per_frame - ctx
    if ctx == 0:
        raise ReproduceError(
            f"VisionZip's official code needs at least one contextual token per frame (its step (N - d) // c "
            f"divides by zero); N={n}, retain_ratio={config.retain_ratio} and dominant_fraction="
            f"{config.dominant_fraction} give {per_frame} tokens, 0 contextual. Raise retain_ratio, lower "
            "dominant_fraction, or use reproduce=None"
        )
    means = x.mean(dim=1)  # features' dtype
    score = importance(x, means, config.dominant_score)
    dominant = torch.zeros(t, n, dtype=torch.bool, device=dev)
    if dom:
        dominant.scatter_(1, torch.topk(score, dom, dim=1).indices, True)
    rest_n = n - dom
    rest_idx = (~dominant).nonzero()[:, 1].view(t, rest_n)  # each frame's other tokens, in index order
    rest = torch.gather(x, 1, rest_idx.unsqueeze(-1).expand(t, rest_n, d))
    unit = rest / rest.norm(dim=-1, keepdim=True)
    step = max(1, rest_n // ctx)
    is_target = torch.zeros(rest_n, dtype=torch.bool, device=dev)
    is_target[torch.arange(0, rest_n, step, device=dev)[:ctx]] = True
    sim = torch.bmm(unit[:, ~is_target], unit[:, is_target].transpose(1, 2))  # [T, members, c]
    assign = torch.zeros_like(sim, dtype=x.dtype).scatter_(2, sim.argmax(dim=2, keepdim=True), 1)
    counts = assign.sum(dim=1).clamp(min=1).unsqueeze(-1)
    context = rest[:, is_target] + torch.bmm(assign.transpose(1, 2), rest[:, ~is_target]) / counts
    keep_mask = dominant.clone()
    keep_mask.scatter_(1, rest_idx[:, is_target], True)
    k = t * per_frame
    keep = mask_to_index(keep_mask, k)
    values = x.clone()
    values.scatter_(1, rest_idx[:, is_target].unsqueeze(-1).expand(t, ctx, d), context.to(x.dtype))
    merged = values.reshape(t * n, d).index_select(0, keep)
    budget = torch.full((t,), per_frame, dtype=torch.long, device=dev)
    return make_selection(keep, budget, t, n, merged_features=merged)


def select_visionzip(features: torch.Tensor, config: VisionZipConfig) -> Selection:
    """Dominant + contextual tokens per frame at exactly K tokens.

    Args:
        features: ``Tensor[T, N, D]``.
        config: a :class:`VisionZipConfig`.

    Returns:
        A :class:`Selection` with ``merged_features[K, D]`` (input dtype).
    """
    x = one_video(features)
    xf, means = float_frames(x)
    if config.reproduce == "authors":
        return select_visionzip_authors(x, config)
    t, n, d = x.shape
    dev = x.device
    k = kept_total(t, n, config.retain_ratio)
    budget = equal_budget(x, k)
    ctx_of = {b: round(b * (1.0 - config.dominant_fraction)) for b in set(equal_split(k, t))}
    c_max = max(ctx_of.values())
    lo = min(ctx_of)
    ctx = torch.where(budget == lo, ctx_of[lo], ctx_of[max(ctx_of)])  # [T], c_t
    dominant = topk_mask(importance(xf, means, config.dominant_score), budget - ctx)

    rest = ~dominant
    pos = rest.long().cumsum(1) - 1  # index among the frame's remaining tokens
    step = torch.div(n - (budget - ctx), ctx.clamp(min=1), rounding_mode="floor").clamp(min=1).unsqueeze(1)
    target = rest & (pos % step == 0) & (pos // step < ctx.unsqueeze(1))
    keep_mask = dominant | target
    keep = mask_to_index(keep_mask, k)
    merged = x.reshape(t * n, d).index_select(0, keep)
    if c_max == 0:
        return make_selection(keep, budget, t, n, merged_features=merged)

    # Targets of each frame in index order, padded to c_max slots: slot j = j-th target.
    slot_order = torch.sort((~target).to(torch.int32), dim=1, stable=True).indices[:, :c_max]  # [T, c_max]
    slot_valid = torch.arange(c_max, device=dev) < ctx.unsqueeze(1)
    target_x = torch.gather(xf, 1, slot_order.unsqueeze(-1).expand(-1, -1, d))  # [T, c_max, D]
    # argmax_j cos(x_i, t_j) = argmax_j x_i . t_j / ||t_j||: no normalised copy of x needed.
    # [T, c_max, D] @ [T, D, N] (rows times the token matrix streams x once).
    sim = torch.bmm(F.normalize(target_x, dim=-1, eps=EPS), xf.transpose(1, 2))  # [T, c_max, N]
    sim = sim.masked_fill(~slot_valid.unsqueeze(-1), float("-inf"))
    members = (rest & ~target).unsqueeze(1).to(xf.dtype)
    assign = torch.zeros_like(sim).scatter_(1, sim.argmax(dim=1, keepdim=True), 1.0) * members  # one-hot
    sums = torch.bmm(assign, xf)  # [T, c_max, D], deterministic (no atomics)
    context = (target_x + sums) / (1.0 + assign.sum(dim=2)).unsqueeze(-1)

    num_ctx = sum(ctx_of[b] for b in equal_split(k, t))
    slots = mask_to_index(slot_valid, num_ctx)  # flat indices into [T * c_max]
    frame_base = (torch.arange(t, device=dev) * n).unsqueeze(1)
    row_of = keep_mask.reshape(-1).long().cumsum(0) - 1  # row in keep of each kept flat index
    rows = row_of[(frame_base + slot_order).reshape(-1)[slots]]
    merged[rows] = context.reshape(t * c_max, d)[slots].to(x.dtype)
    return make_selection(keep, budget, t, n, merged_features=merged)


register_method(MethodSpec(
    name="visionzip",
    config_cls=VisionZipConfig,
    select=select_visionzip,
    merges=True,
    summary="VisionZip: dominant tokens (token-norm score) + merged contextual tokens per frame",
    keeps_every_frame=lambda cfg: True,
    every_frame_note="yes: the budget is split equally over frames, at least one each (authors: round(N*r) >= 1 each)",
))
