"""``reproduce="authors"`` of the merging baselines (VisionZip, FastVID) against loop re-statements
of the official code written here, equality of kept sets, budgets and merged features; and the
VisionZip merge formula of the default mode, pinned by hand."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_reproduce import DTYPES, make_video

import vcast
from vcast.errors import ReproduceError

videos = st.builds(
    make_video,
    t=st.integers(1, 24), n=st.integers(16, 120), d=st.integers(2, 24),
    kind=st.sampled_from(["random", "ties", "static"]), seed=st.integers(0, 10**6), dtype=st.sampled_from(DTYPES),
)


def _importance(x: torch.Tensor, how: str) -> torch.Tensor:
    """The stand-in for the [CLS] / ViT attention score, in the features' dtype."""
    if how == "norm":
        return torch.linalg.vector_norm(x, dim=-1)
    return torch.bmm(x.mean(dim=1).unsqueeze(1), x.transpose(1, 2)).squeeze(1)


def visionzip_official(x: torch.Tensor, ratio: float, fraction: float, how: str):
    """Mirrors dvlab-research/VisionZip visionzip/clip_encoder.py (CLIPVisionTower_VisionZip.forward);
    the official code runs the frames as one batch of images, so the bmm steps are batched the same
    way; the final per-frame assembly is a loop."""
    t, n, d = x.shape
    k = min(max(round(n * ratio), 1), n)
    contextual = round(k * (1.0 - fraction))
    dominant = k - contextual
    top = _importance(x, how).topk(dominant, dim=1).indices
    mask = torch.ones_like(x[:, :, 0], dtype=torch.bool).scatter_(1, top, False)
    filtered = x.masked_select(mask.unsqueeze(-1)).view(t, n - dominant, d)
    metric = filtered / filtered.norm(dim=-1, keepdim=True)
    step = max(1, metric.shape[1] // contextual)
    targets = torch.arange(0, metric.shape[1], step)[:contextual]
    others = ~torch.isin(torch.arange(metric.shape[1]), targets)
    similarity = torch.bmm(metric[:, others, :], metric[:, targets, :].transpose(1, 2))
    one_hot = torch.zeros(t, int(others.sum()), contextual, dtype=x.dtype)
    one_hot.scatter_(2, similarity.argmax(dim=2).unsqueeze(-1), 1)
    counts = one_hot.sum(dim=1).clamp(min=1).unsqueeze(-1)
    context = filtered[:, targets, :] + torch.bmm(one_hot.transpose(1, 2), filtered[:, others, :]) / counts
    keep, values = [], []
    for f in range(t):
        index = torch.cat([top[f], mask[f].nonzero().flatten()[targets]])
        order = torch.argsort(index)
        keep += (index[order] + f * n).tolist()
        values.append(torch.cat([x[f, top[f]], context[f]])[order])
    return keep, torch.cat(values)


@settings(max_examples=80, deadline=None)
@given(x=videos, ratio=st.sampled_from([1.0, 0.5, 0.25, 0.15, 0.1]), how=st.sampled_from(["norm", "mean_query"]))
def test_visionzip_authors_equals_the_official_code(x: torch.Tensor, ratio: float, how: str) -> None:
    n = x.shape[1]
    if round(min(max(round(n * ratio), 1), n) * (1 - 54 / 64)) == 0:
        with pytest.raises(ReproduceError, match="divides by zero"):
            vcast.select_tokens(x, method="visionzip", retain_ratio=ratio, reproduce="authors", dominant_score=how)
        return
    sel = vcast.select_tokens(x, method="visionzip", retain_ratio=ratio, reproduce="authors", dominant_score=how)
    keep, values = visionzip_official(x, ratio, 54 / 64, how)
    assert sel.keep_index.tolist() == keep
    assert torch.equal(sel.merged_features, values)
    assert sel.frame_budget.tolist() == [len(keep) // x.shape[0]] * x.shape[0]


def test_visionzip_merge_formula_default_average_authors_target_plus_mean() -> None:
    # One frame, N=8: dominant by norm = the two big tokens; the rest has one target (index 0 of the
    # rest) and every other rest token joins it (all point the same way).
    x = torch.ones(1, 8, 2)
    x[0, :, 1] = torch.arange(8, dtype=torch.float32) * 0.01
    x[0, 6:] *= 10.0  # dominant
    cfg = dict(method="visionzip", retain_ratio=3 / 8, dominant_fraction=2 / 3)  # k=3: 2 dominant, 1 context
    default = vcast.select_tokens(x, **cfg)
    authors = vcast.select_tokens(x, reproduce="authors", **cfg)
    assert default.keep_index.tolist() == authors.keep_index.tolist() == [0, 6, 7]
    target, members = x[0, 0], x[0, 1:6]
    torch.testing.assert_close(default.merged_features[0], (target + members.sum(0)) / 6)
    torch.testing.assert_close(authors.merged_features[0], target + members.mean(0))


def fastvid_official(x: torch.Tensor, ratio: float, how: str, seed: int = 0, c: int = 8, tau: float = 0.84,
                     ignore: float = 0.95, d_ratio: float = 0.4, p: int = 4, beta: float = 0.6):
    """Mirrors LunarShen/FastVID fastvid_qwen25vl/lmms-eval/lmms_eval/models/qwenvlutils/
    modeling_qwen2_5_vl.py, the pruning block of Qwen2_5_VLForConditionalGeneration.forward (DySeg,
    per-segment counts, salient top-k, DPC-kNN context, DTM), its noise drawn from a seeded
    generator in the same order."""
    gen = torch.Generator().manual_seed(seed)
    t, n, _ = x.shape
    attn = _importance(x, how)
    g = x.view(t, n, -1).mean(1)
    g = g / g.norm(dim=1, keepdim=True)
    sim = (g[:-1] * g[1:]).sum(dim=1)
    cuts = torch.unique(torch.cat([torch.topk(sim, c - 1, largest=False).indices,
                                   torch.nonzero(sim < tau).squeeze(1)])).sort().values
    sizes = [cuts[0].item() + 1] + [cuts[i].item() - cuts[i - 1].item() for i in range(1, len(cuts))]
    sizes.append(t - cuts[-1].item() - 1)
    frame_keep = int(n * ratio)
    keep, values, budget, start = [], [], [], 0
    for h, a, gs in zip(torch.split(x, sizes), torch.split(attn, sizes), torch.split(g, sizes)):
        length = h.shape[0]
        seg_keep = frame_keep * length
        seg_ctx = max(int(seg_keep * d_ratio), 1)
        seg_sal = seg_keep - seg_ctx
        if length == 1:
            sal, ctx = [seg_sal], [seg_ctx]
        else:
            near = torch.nonzero((gs[:-1] * gs[1:]).sum(dim=1) < ignore).squeeze(1).sort().values
            runs = [length]
            if near.shape[0] > 0:
                runs = [near[0].item() + 1] + [near[i].item() - near[i - 1].item() for i in range(1, len(near))]
                runs.append(length - near[-1].item() - 1)
            v = len(runs)
            sal_run = [seg_sal // v + (1 if i < seg_sal % v else 0) for i in range(v)]
            groups = (v + p - 1) // p
            grp = [seg_ctx // groups + (1 if i < seg_ctx % groups else 0) for i in range(groups)]
            ctx_run, gi = [], 0
            for i in range(v):
                if i % p == 0:
                    ctx_run.append(min(grp[gi], n // 2))
                    gi += 1
                else:
                    ctx_run.append(0)
            ctx_run.reverse()
            sal, ctx = [], []
            for i in range(v):
                sal += [0] * (runs[i] - 1)
                ctx += [0] * (runs[i] - 1)
                if ctx_run[i] == 0:
                    sal.append(min(sal_run[i], n))
                    ctx.append(0)
                else:
                    ctx.append(min(ctx_run[i], n // 2))
                    sal.append(min(sal_run[i], n - ctx[-1]))
        salient, contexts = [], []
        for f in range(length):
            top = torch.topk(a[f], sal[f]).indices if sal[f] > 0 else None
            if ctx[f] > 0:
                every = torch.arange(n)
                rest = every[~torch.isin(every, top)] if top is not None else every
                cand = h[f][rest].unsqueeze(0)
                dist = torch.cdist(cand.float(), cand.float()) / (cand.shape[2] ** 0.5)
                nearest, _ = torch.topk(dist, k=4, dim=-1, largest=False)
                density = (-(nearest**2).mean(dim=-1)).exp()
                density = density + torch.rand(density.shape, generator=gen, dtype=density.dtype) * 1e-6
                denser = (density[:, None, :] > density[:, :, None]).type(cand.dtype)
                far = dist.flatten(1).max(dim=-1)[0][:, None, None]
                delta, _ = (dist * denser + far * (1 - denser)).min(dim=-1)
                _, picked = torch.topk(delta * density, k=ctx[f], dim=-1)
                contexts.append(rest[picked[0].sort().values] + f * n)
            if top is not None:
                salient.append(top + f * n)
            budget.append(max(sal[f], 0) + ctx[f])
        tokens = h.reshape(length * n, -1)
        salient = torch.cat(salient)
        every = torch.arange(length * n)
        unit = tokens / tokens.norm(dim=-1, keepdim=True)
        merged = []
        for cidx in contexts:
            members = every[~torch.isin(every, torch.cat([salient, cidx]))]
            similarity = torch.mm(unit[members], unit[cidx].T)
            one_hot = torch.zeros(members.shape[0], cidx.shape[0], dtype=h.dtype)
            one_hot.scatter_(1, similarity.argmax(dim=1).unsqueeze(-1), 1)
            weight = (1 / (one_hot.sum(dim=0).unsqueeze(-1) + 1)).clamp(min=beta)
            counts = one_hot.sum(dim=0).clamp(min=1).unsqueeze(-1)
            mean = torch.mm(one_hot.T, tokens[members]) / counts
            merged.append(weight * tokens[cidx] + (1 - weight) * mean)
        index = torch.cat([salient, torch.cat(contexts)])
        order = torch.argsort(index)
        keep += (index[order] + start * n).tolist()
        values.append(torch.cat([tokens[salient], torch.cat(merged)])[order])
        start += length
    return keep, budget, torch.cat(values)


@settings(max_examples=60, deadline=None)
@given(x=videos.filter(lambda v: v.shape[0] >= 8), ratio=st.sampled_from([1.0, 0.5, 0.25, 0.15]),
       how=st.sampled_from(["norm", "mean_query"]), seed=st.integers(0, 3))
def test_fastvid_authors_equals_the_official_code(x: torch.Tensor, ratio: float, how: str, seed: int) -> None:
    try:
        sel = vcast.select_tokens(x, method="fastvid", retain_ratio=ratio, reproduce="authors", salient_score=how,
                                  seed=seed)
    except ReproduceError:
        with pytest.raises((RuntimeError, IndexError)):  # the official code fails there too
            fastvid_official(x, ratio, how, seed)
        return
    keep, budget, values = fastvid_official(x, ratio, how, seed)
    assert sel.keep_index.tolist() == keep and sel.frame_budget.tolist() == budget
    assert torch.equal(sel.merged_features, values)


def test_fastvid_authors_keeps_fewer_than_asked_and_stops_where_the_original_does() -> None:
    x = make_video(16, 64, 12, "static", 1, torch.float32)
    x[8:] += 2.0  # a cut
    sel = vcast.select_tokens(x, method="fastvid", retain_ratio=0.27, reproduce="authors")
    assert sel.num_kept <= int(64 * 0.27) * 16 < round(16 * 64 * 0.27)
    assert vcast.select_tokens(x, method="fastvid", retain_ratio=0.27).num_kept == round(16 * 64 * 0.27)
    with pytest.raises(ReproduceError, match="T >= dyseg_c = 8"):
        vcast.select_tokens(x[:7], method="fastvid", retain_ratio=0.25, reproduce="authors")
    with pytest.raises(RuntimeError):
        fastvid_official(x[:7], 0.25, "norm")
    assert vcast.select_tokens(x[:7], method="fastvid", retain_ratio=0.25).num_kept == round(7 * 64 * 0.25)
