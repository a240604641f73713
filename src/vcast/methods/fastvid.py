"""FastVID: dynamic temporal segmentation + density-based spatio-temporal pruning and merging.

Reference: Shen, Gong, He, Zhang, Liu, Zhao, Ding, "FastVID: Dynamic Density Pruning for Fast Video
Large Language Models", NeurIPS 2025, arXiv 2503.11187; official code ``LunarShen/FastVID``. We
follow its Qwen2.5-VL path (``fastvid_qwen25vl``, defaults c=8, tau=0.84, ignore=0.95, d=0.4, p=4,
beta=0.6; the LLaVA-OneVision scripts use tau=0.9).

What it does:

1. DySeg: frame embeddings ``g_t`` (L2-normalised frame means); the video is cut after frame t when
   ``cos(g_t, g_t+1) < dyseg_tau`` and after the ``dyseg_c - 1`` lowest transitions.
2. Inside a segment, transitions with ``cos >= dyseg_ignore`` mark near-duplicate frames: each run of
   them is represented by its last frame. Runs are counted from the end of the segment, and every
   ``dtm_p``-th representative (the last one included) is an anchor frame.
3. Budget: the segment's share ``B`` of K (K split equally over frames, summed over the segment) is
   divided into ``C = max(floor(d*B), 1)`` context tokens, shared equally by the anchor frames (at
   most N/2 per frame), and ``B - C`` salient tokens, shared equally by the representatives.
4. STPrune: each frame keeps its salient tokens by importance (below); each anchor frame then picks
   its context tokens among its other tokens as DPC-kNN density peaks (k=4 neighbours, distances
   scaled by 1/sqrt(D), density ``exp(-mean sq. kNN distance)``, score = density x distance to the
   nearest denser token).
5. DTM: every dropped token of the segment is assigned, for each anchor frame, to that frame's most
   similar context token (cosine); each context token becomes ``a*x + (1-a)*mean(assigned)`` with
   ``a = max(1/(count+1), dtm_beta)``.

Positions: salient tokens keep their own; a merged context token sits at the original grid position
of its density-peak token. ``merged_features`` holds originals for salient tokens.

Importance without the ViT's attention: the official Qwen2.5-VL code scores salient tokens by the
attention of the frame-mean query over 2x2-pooled keys in the last ViT block. The contract passes
post-merger features only, so ``salient_score="norm"`` (default) ranks by ``||x_i||`` (the proxy of
the VidCom2 ``qwen``-branch port behind V-CAST's FastVID numbers) and ``"mean_query"`` by
``x_i . mean_t`` (the same frame-mean query, without the learned projections). ``"mean_query"`` was
the default until measured on the trained proxy Qwen3-VL: it keeps frame-typical tokens, and at ratio
0.5 on 20 test clips per family accuracy fell to 0.40 (unpruned 0.75) against 0.80 with ``"norm"``.

Ratio mapping and deviations: the official budget ``int(N*r)`` per frame is concentrated on the
representative frames and capped per frame, so fewer tokens survive than asked (the repo notes 0.27
giving 24.1%). Here exactly ``K = total_budget(T, N, r)`` tokens are kept: when a frame's share
exceeds N, the excess spills over the other frames of its segment (V-CAST's largest-remainder
allocation, :func:`vcast.core.budget.allocate_frames`, with the shares as weights). The official
code adds random noise (1e-6) to break density ties; we break ties by index (deterministic). It
also averages other anchor frames' kept context tokens into each context token; we merge dropped
tokens only, so at ratio 1.0 the output equals the input. ``curvature`` reports the transition
dissimilarity ``1 - cos(g_t-1, g_t)`` (0 for frame 0).

Cost: two host syncs (finiteness, and the ``T - 1`` transition similarities that define the
segments). Segments, and the merge within each, are processed in a Python loop over segments
(inherent to the algorithm, as in the official code); frames are vectorised within each step.

``reproduce="authors"`` (:mod:`vcast.methods.fastvid_authors`; the official Qwen2.5-VL path), line by
line against the default:

- counts: the official ``int(N * r)`` per frame, summed per segment, split into
  ``max(int(B * d), 1)`` context and the rest salient, the salient share spread over the runs of
  near-duplicate frames (first runs one more) and the context share over every ``dtm_p``-th run
  counted from the end, each capped per frame (context at N/2, salient at the rest) with no
  spill-over, so fewer tokens survive than asked (the repository notes 0.27 giving 24.1%);
  default: exactly K, the excess spilled over the segment's other frames;
- salient tokens by ``torch.topk`` of the importance score (``salient_score``, in the features'
  dtype; the official score is the last ViT block's attention), ties as PyTorch orders them;
  default: float32, ties to the lower index;
- density peaks: ``torch.cdist`` on float32 copies over ``sqrt(D)``, k = 4 neighbours (the official
  constant; ``dpc_k`` is ignored), random noise of 1e-6 added to the densities to break ties;
  default: exact ties to the lower index, no noise. The official noise comes from torch's global
  generator, so its own runs differ from one another; here it is drawn, frame by frame in the
  official order, from a CPU generator seeded with ``seed``: reproducible, and the same draws as
  the official code would make from that generator state;
- DTM: each anchor frame's context tokens absorb every segment token that is neither salient nor
  one of *its own* context tokens, so other anchor frames' kept context tokens are averaged in too;
  tokens normalised by ``x / ||x||`` (no eps) and merged in the features' dtype; default: dropped
  tokens only (so ratio 1.0 returns the input), float32;
- where the official code cannot run, a :class:`~vcast.errors.ReproduceError`: ``T < dyseg_c``
  (its top-k over the ``T - 1`` transitions), no cut at all, a segment with no salient or no context
  token (``int(N*r)`` too small), or fewer than 4 candidates for an anchor frame's density step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from vcast.config import MethodConfig
from vcast.core.budget import allocate_frames
from vcast.core.curvature import EPS
from vcast.core.layout import BatchLayout
from vcast.core.selection import Selection
from vcast.errors import ConfigError
from vcast.methods._common import (
    equal_split,
    float_frames,
    kept_total,
    make_selection,
    mask_to_index,
    one_video,
    topk_mask,
)
from vcast.methods.fastvid_parts import density_peaks, merge_into_context
from vcast.methods.registry import MethodSpec, register_method
from vcast.methods.visionzip import importance


def _number(name: str, value: object, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be in [{lo}, {hi}], got {value!r}")


def _count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an int >= 1, got {value!r}")


@dataclass(frozen=True)
class FastVIDConfig(MethodConfig):
    """FastVID options (names as the official ``fastvid_*`` flags; defaults: its Qwen2.5-VL script).

    Attributes:
        dyseg_c: minimum number of segments (cuts at the ``c - 1`` lowest transitions).
        dyseg_tau: also cut where the frame-embedding cosine is below this.
        dyseg_ignore: consecutive frames at least this similar are represented by one frame.
        stprune_d: fraction of a segment's budget spent on merged context tokens.
        dtm_p: every p-th representative frame of a segment is an anchor frame.
        dtm_beta: minimum weight of a context token's own feature in its merge.
        dpc_k: neighbours of the DPC-kNN density.
        salient_score: ``"norm"`` (default) or ``"mean_query"`` (see the module docstring).
    """

    method: ClassVar[str] = "fastvid"
    REPRODUCE_MODES: ClassVar[tuple[str, ...]] = ("authors",)

    dyseg_c: int = 8
    dyseg_tau: float = 0.84
    dyseg_ignore: float = 0.95
    stprune_d: float = 0.4
    dtm_p: int = 4
    dtm_beta: float = 0.6
    dpc_k: int = 4
    salient_score: Literal["mean_query", "norm"] = "norm"

    def __post_init__(self) -> None:
        super().__post_init__()
        _count("dyseg_c", self.dyseg_c)
        _count("dtm_p", self.dtm_p)
        _count("dpc_k", self.dpc_k)
        _number("dyseg_tau", self.dyseg_tau, -1.0, 1.0)
        _number("dyseg_ignore", self.dyseg_ignore, -1.0, 1.0)
        _number("stprune_d", self.stprune_d, 0.0, 1.0)
        _number("dtm_beta", self.dtm_beta, 0.0, 1.0)
        if self.salient_score not in ("mean_query", "norm"):
            raise ConfigError(f"salient_score must be 'mean_query' or 'norm', got {self.salient_score!r}")


def fastvid_plan(
    sim: torch.Tensor, tokens: int, total: int, cfg: FastVIDConfig
) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """Segments and per-frame budgets on the host (steps 1-3).

    Args:
        sim: ``FloatTensor[T - 1]`` (CPU), cosine of consecutive frame embeddings.
        tokens: N.
        total: K.
        cfg: the config.

    Returns:
        ``(segment lengths, budget LongTensor[T], context LongTensor[T])`` on the CPU; ``budget``
        sums to K and ``context[t] <= min(budget[t], N // 2)`` (non-zero on anchor frames only).
    """
    t = sim.numel() + 1
    ends = torch.zeros(t, dtype=torch.bool)
    ends[-1] = True
    rep = ends.clone()
    if t > 1:
        lowest = torch.sort(sim.double(), stable=True).indices[: min(cfg.dyseg_c - 1, t - 1)]
        ends[lowest] = True
        ends[:-1] |= sim < cfg.dyseg_tau
        rep[:-1] = ends[:-1] | (sim < cfg.dyseg_ignore)
    seg = torch.cumsum(ends.long(), 0) - ends.long()  # segment id of each frame
    lengths = torch.bincount(seg).tolist()
    num = len(lengths)
    per_seg = torch.zeros(num, dtype=torch.long)
    shares = per_seg.index_add(0, seg, torch.tensor(equal_split(total, t)))  # B_s
    ctx_total = (shares.double() * cfg.stprune_d).floor().long().clamp(min=1)
    reps = per_seg.index_add(0, seg, rep.long())
    # representative index counted from the end of its segment (0 = the segment's last frame)
    index_in_seg = torch.cumsum(rep.long(), 0) - (reps.cumsum(0) - reps)[seg] - 1
    from_end = reps[seg] - 1 - index_in_seg
    anchor = rep & (from_end % cfg.dtm_p == 0)
    anchors = per_seg.index_add(0, seg, anchor.long())
    sal_w = (shares - ctx_total).double() / reps.double()
    ctx_w = ctx_total.double() / anchors.double()
    weight = rep.double() * sal_w[seg] + anchor.double() * ctx_w[seg]
    weight = weight / per_seg.double().index_add(0, seg, weight)[seg]
    layout = BatchLayout.build([torch.empty(n, tokens, 0) for n in lengths], torch.device("cpu"))
    budget = allocate_frames(weight, shares, layout, min_tokens_per_frame=0)
    # context share of an anchor frame's allocation; capped at N/2 per frame as in the official code
    frac = torch.where(anchor, ctx_w[seg] / (sal_w[seg] + ctx_w[seg]), torch.zeros(t, dtype=torch.float64))
    context = torch.minimum(torch.round(budget.double() * frac).long(), torch.full_like(budget, tokens // 2))
    return lengths, budget, torch.minimum(context, budget)


def select_fastvid(features: torch.Tensor, config: FastVIDConfig) -> Selection:
    """FastVID at exactly K tokens.

    Args:
        features: ``Tensor[T, N, D]``.
        config: a :class:`FastVIDConfig`.

    Returns:
        A :class:`Selection` with ``merged_features[K, D]`` (input dtype).
    """
    x = one_video(features)
    xf, means = float_frames(x)
    if config.reproduce == "authors":
        from vcast.methods.fastvid_authors import select_fastvid_authors

        return select_fastvid_authors(x, config, importance(x, x.mean(dim=1), config.salient_score))
    t, n, d = x.shape
    dev = x.device
    k = kept_total(t, n, config.retain_ratio)
    g = F.normalize(means, dim=-1, eps=EPS)
    sim = (g[:-1] * g[1:]).sum(-1)
    lengths, budget_h, context_h = fastvid_plan(sim.cpu(), n, k, config)  # host sync: the segments
    budget, context = budget_h.to(dev), context_h.to(dev)

    salient = topk_mask(importance(xf, means, config.salient_score), budget - context)
    anchor_frames = torch.nonzero(context_h > 0).flatten()
    ctx_mask = torch.zeros_like(salient)
    if anchor_frames.numel():
        af = anchor_frames.to(dev)
        ctx_mask[af] = density_peaks(xf[af], ~salient[af], context[af], config.dpc_k)
    keep_mask = salient | ctx_mask
    keep = mask_to_index(keep_mask, k)
    merged = x.reshape(t * n, d).index_select(0, keep)
    row_of = keep_mask.reshape(-1).long().cumsum(0) - 1
    dropped = n - budget_h

    flat = xf.reshape(t * n, d)
    start = 0
    for length in lengths:  # one iteration per segment (few), frames vectorised inside
        stop = start + length
        ctx_counts = context_h[start:stop]
        num_ctx = int(ctx_counts.sum())
        if num_ctx and int(dropped[start:stop].sum()):
            ctx_idx = mask_to_index(ctx_mask[start:stop], num_ctx)  # into the segment
            groups = ctx_counts[ctx_counts > 0].tolist()  # host data already: no sync
            seg = flat[start * n : stop * n]
            values = merge_into_context(seg, ctx_idx, ~keep_mask[start:stop].reshape(-1), groups, config.dtm_beta)
            merged[row_of[ctx_idx + start * n]] = values.to(x.dtype)
        start = stop
    curvature = torch.cat([torch.zeros(1, device=dev), 1.0 - sim])
    return make_selection(keep, budget, t, n, curvature=curvature, merged_features=merged)


register_method(MethodSpec(
    name="fastvid",
    config_cls=FastVIDConfig,
    select=select_fastvid,
    merges=True,
    summary="FastVID: DySeg segments; salient tokens + DPC-kNN context tokens merging the dropped ones",
    every_frame_note="no: near-duplicate frames are represented by the last frame of their run and keep "
                     "nothing themselves (FastVID's design; authors mode too)",
))
