"""``reproduce=`` modes of V-CAST, EVS, VidCom2 and DyCoke against independent loop re-statements of
the published code, written here (each commented with the file it mirrors). Equality of kept sets
and per-frame budgets is asserted, never closeness, on many shapes, ratios, dtypes and tie-heavy
inputs."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import vcast
from vcast.errors import ConfigError, ReproduceError
from vcast.methods import make_config
from vcast.methods.dycoke import published_rate

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
RATIOS = (1.0, 0.5, 0.475, 0.33, 0.25, 0.15, 0.1, 0.05, 0.01)


def make_video(t: int, n: int, d: int, kind: str, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Random, tie-heavy (small integers), static-background or flat-frame videos."""
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        x = torch.randn(t, n, d, generator=g)
    elif kind == "ties":
        x = torch.randint(-2, 3, (t, n, d), generator=g).float()
    elif kind == "static":
        x = torch.randn(1, n, d, generator=g).repeat(t, 1, 1) + 0.01 * torch.randn(t, n, d, generator=g)
    else:  # "flat": every token of a frame equal (all scores tie)
        x = torch.randn(t, 1, d, generator=g).repeat(1, n, 1)
    return x.to(dtype)


videos = st.builds(
    make_video,
    t=st.integers(1, 32), n=st.integers(1, 160), d=st.integers(2, 24),
    kind=st.sampled_from(["random", "ties", "static", "flat"]), seed=st.integers(0, 10**6),
    dtype=st.sampled_from(DTYPES),
)


def _flat(sel: vcast.Selection) -> tuple[list[int], list[int]]:
    return sel.keep_index.tolist(), sel.frame_budget.tolist()


# V-CAST ------------------------------------------------------------------------------------------


def vcast_published(frames: torch.Tensor, retain_ratio: float, min_k: int = 1, temp: float = 0.7):
    """Mirrors xinyouu/V-CAST compressor/v_cast/modeling_qwen3_vl_v_cast.py: v_cast_compress_qwen3's
    T <= 1 skip, _v_cast_compress_frames, _compute_curvature and _allocate_budget_per_frame, frame by
    frame in the features' dtype."""
    t, n, _ = frames.shape
    if t <= 1:
        return list(range(t * n)), [n] * t
    reps = F.normalize(frames.mean(dim=1), dim=-1, eps=1e-6)
    v_in, v_out = reps[1:-1] - reps[:-2], reps[2:] - reps[1:-1]
    inner = 1.0 - F.cosine_similarity(v_in, v_out, dim=-1, eps=1e-6)
    one = torch.ones(1, dtype=inner.dtype)
    weights = torch.softmax(torch.cat([one, inner, one]).float() / temp, dim=0)
    total = max(1, min(t * n, int(round(float(t * n) * float(retain_ratio)))))
    min_k = max(0, min(min_k, n))
    if min_k > 0:
        total = max(total, t * min_k)
    # _allocate_budget_per_frame
    total = max(0, min(total, t * n))
    floor_k = 0 if total < t * min_k else min_k
    alloc = torch.full((t,), floor_k, dtype=torch.long)
    remaining = total - int(alloc.sum())
    if remaining > 0:
        w = weights.float().clamp_min(0.0)
        if float(w.sum()) <= 0.0:
            w = torch.ones_like(w)
        w = w / w.sum().clamp_min(1e-6)
        raw = w * float(remaining)
        alloc = alloc + torch.minimum(torch.floor(raw).long(), torch.full((t,), n - floor_k))
        remaining = total - int(alloc.sum())
        if remaining > 0:
            frac = (raw - torch.floor(raw)).masked_fill(alloc >= n, -1.0)
            for _ in range(remaining):
                i = torch.argmax(frac)
                if frac[i].item() < 0:
                    break
                alloc[i] += 1
                if alloc[i] >= n:
                    frac[i] = -1.0
        elif remaining < 0:
            over = -remaining
            for i in torch.argsort(w, descending=False):
                if over <= 0:
                    break
                if alloc[i] > floor_k:
                    alloc[i] -= 1
                    over -= 1
    keep = []
    for f in range(t):
        k = int(alloc[f])
        if k <= 0:
            continue
        sim = F.cosine_similarity(frames[f], reps[f].unsqueeze(0), dim=-1, eps=1e-6)
        norm = frames[f].float().norm(dim=-1)
        norm = (norm - norm.min()) / (norm.max() - norm.min() + 1e-6)
        top = torch.topk((1.0 - sim).float() + norm, k=k, largest=True, sorted=False).indices
        keep += (torch.sort(top).values + f * n).tolist()
    return keep, alloc.tolist()


@settings(max_examples=120, deadline=None)
@given(x=videos, ratio=st.sampled_from(RATIOS), min_k=st.sampled_from([0, 1, 2]))
def test_vcast_authors_equals_the_published_code(x: torch.Tensor, ratio: float, min_k: int) -> None:
    cfg = vcast.VCastConfig(retain_ratio=ratio, min_tokens_per_frame=min_k, reproduce="authors")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = vcast.select_tokens(x, cfg)
    assert _flat(sel) == vcast_published(x, ratio, min_k)


def test_vcast_authors_budgets_differ_from_the_default_where_the_leftover_loop_concentrates() -> None:
    # The published loop gives every leftover token to the frame with the largest fractional part.
    x = make_video(16, 49, 12, "random", 0, torch.float32)
    authors = vcast.select_tokens(x, vcast.VCastConfig(retain_ratio=0.25, reproduce="authors"))
    default = vcast.select_tokens(x, vcast.VCastConfig(retain_ratio=0.25))
    assert authors.num_kept == default.num_kept == 196
    assert authors.frame_budget.tolist() != default.frame_budget.tolist()
    # the default's leftovers: at most one per frame above the floors; the published: all on few frames
    w = torch.softmax(default.curvature / 0.7, 0).double() * (196 - 16)
    floors = 1 + torch.floor(w).long()
    assert int((default.frame_budget - floors).max()) <= 1
    assert int((authors.frame_budget - floors).max()) > 1


def test_vcast_authors_leaves_one_frame_videos_unpruned_with_a_warning() -> None:
    x = torch.randn(1, 20, 8)
    with pytest.warns(UserWarning, match="one-frame video unpruned"):
        sel = vcast.select_tokens(x, vcast.VCastConfig(retain_ratio=0.25, reproduce="authors"))
    assert sel.num_kept == 20
    assert vcast.select_tokens(x, vcast.VCastConfig(retain_ratio=0.25)).num_kept == 5


def test_vcast_authors_runs_on_lists_and_auto_and_rejects_extensions() -> None:
    a, b = make_video(6, 9, 8, "random", 1, torch.float32), make_video(4, 16, 8, "random", 2, torch.float32)
    sels = vcast.select_tokens([a, b], vcast.VCastConfig(retain_ratio=0.5, reproduce="authors"))
    assert [_flat(s) for s in sels] == [vcast_published(a, 0.5), vcast_published(b, 0.5)]
    auto = vcast.select_tokens([a, b], retain_ratio="auto", reproduce="authors")
    ratios = vcast.core.select.adaptive_ratios([a, b], 0.1, 0.5)
    assert [_flat(s) for s in auto] == [vcast_published(a, ratios[0]), vcast_published(b, ratios[1])]
    with pytest.raises(ConfigError, match="angle curvature"):
        vcast.VCastConfig(reproduce="authors", curvature="robust")
    with pytest.raises(ConfigError, match="angle curvature"):
        vcast.VCastConfig(reproduce="authors", token_curvature_weight=1.0)
    with pytest.raises(ConfigError, match="no reproduce='authors' mode"):
        make_config("vcast-robust", reproduce="authors")


# EVS (vLLM) --------------------------------------------------------------------------------------


def evs_vllm(x: torch.Tensor, q: float, h: int, w: int) -> list[int]:
    """Mirrors vllm/multimodal/video_prune/evs.py: compute_retention_mask and
    compute_retained_tokens_count, on the [T, H, W, D] view vLLM uses."""
    t, n, d = x.shape
    grid = x.reshape(t, h, w, d)
    dissim = 1 - F.cosine_similarity(grid[1:, ...], grid[:-1, ...], dim=-1)
    dissim = torch.cat([255 * torch.ones_like(grid[:1, :, :, 0]), dissim], dim=0)
    order = torch.argsort(dissim.view(-1), dim=-1, descending=True, stable=True)
    count = max(n, int(t * n * (1 - q)))
    mask = torch.zeros(t * n, dtype=torch.bool)
    mask.index_fill_(0, order[:count], True)
    return mask.nonzero().flatten().tolist()


@settings(max_examples=120, deadline=None)
@given(x=videos, ratio=st.sampled_from(RATIOS))
def test_evs_vllm_equals_vllm(x: torch.Tensor, ratio: float) -> None:
    t, n, _ = x.shape
    sel = vcast.select_tokens(x, method="evs", retain_ratio=ratio, reproduce="vllm")
    assert sel.keep_index.tolist() == evs_vllm(x, 1.0 - ratio, n, 1)
    assert sel.frame_budget.tolist() == torch.bincount(sel.keep_index // n, minlength=t).tolist()


def test_evs_vllm_counts_include_the_whole_first_frame_and_the_float_floor() -> None:
    x = make_video(8, 196, 16, "random", 3, torch.float32)
    sel = vcast.select_tokens(x, method="evs", retain_ratio=0.05, reproduce="vllm")
    assert sel.num_kept == 196 and sel.frame_budget.tolist() == [196] + [0] * 7  # vLLM: the first frame, whole
    assert vcast.select_tokens(x, method="evs", retain_ratio=0.05).num_kept == round(8 * 196 * 0.05)  # 78
    y = make_video(10, 10, 8, "random", 4, torch.float32)
    assert vcast.select_tokens(y, method="evs", retain_ratio=0.1, reproduce="vllm").num_kept == max(10, int(100 * (1 - 0.9)))
    assert evs_vllm(x, 0.5, 14, 14) == vcast.select_tokens(x, method="evs", retain_ratio=0.5, reproduce="vllm").keep_index.tolist()
    with pytest.raises(ConfigError, match="its modes: 'vllm'"):
        make_config("evs", reproduce="authors")


# VidCom2 -----------------------------------------------------------------------------------------

ALPHAS = [2**k for k in range(-3, 2)]


def _gaussian(x: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    dist = ((x - centre) ** 2).sum(dim=-1)
    return sum(torch.exp(-dist / (2 * a)) for a in ALPHAS)


def _vidcom2_scores(x: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    t, n, d = x.shape
    flat = x.reshape(t * n, d)
    _, idx = torch.topk(flat.var(dim=0, unbiased=False), k=channels, largest=False)
    units = F.normalize(flat[:, idx].view(-1, n, channels), dim=-1)
    return _gaussian(units, units.mean(dim=(0, 1), keepdim=True)), _gaussian(units, units.mean(dim=1, keepdim=True))


def vidcom2_authors(x: torch.Tensor, base: float) -> tuple[list[int], list[int]]:
    """Mirrors xuyang-liu16/VidCom2 token_compressor/vidcom2/vidcom2.py: vidcom2_compression with
    select_low_var_channels, compute_gaussian_scores, compute_scales and select_outlier_indices."""
    t, n, d = x.shape
    video, frame = _vidcom2_scores(x, int(d * 0.5))
    scores = -video.mean(dim=-1)
    probs = F.softmax((scores - scores.max()) / 0.01, dim=0)
    scales = (base * (1 + probs - probs.mean())).clamp(max=1.0)
    ks = (scales * n).round().long().clamp(min=1).tolist()
    keep = []
    for i, k in enumerate(ks):
        _, idx = torch.topk((video + frame)[i], k=k, largest=False, sorted=False)
        keep += (idx.sort().values + i * n).tolist()
    return keep, ks


def vidcom2_vllm(x: torch.Tensor, q: float) -> list[int]:
    """Mirrors vllm/multimodal/video_prune/vidcom2.py: compute_retention_mask (steps 1-5) and
    compute_retained_tokens_count."""
    t, n, d = x.shape
    total = t * n
    target = min(max(t, min(int(total * (1.0 - q)), total)), total)
    video, frame = _vidcom2_scores(x, max(1, int(d * 0.5)))
    sim = video + frame
    scores = -video.mean(dim=-1)
    probs = F.softmax((scores - scores.max()) / 0.01, dim=0)
    scales = ((1.0 - q) * (1.0 + probs - probs.mean())).clamp(max=1.0)
    ks = (scales * n).round().long().clamp(min=1, max=n)
    mask = torch.zeros(t, n, dtype=torch.bool)
    for i in range(t):
        _, idx = torch.topk(sim[i], k=int(ks[i].item()), largest=False, sorted=False)
        mask[i].scatter_(0, idx, True)
    flat, flat_sim = mask.view(-1), sim.view(-1)
    current = int(flat.sum())
    if current > target:
        kept = flat.nonzero(as_tuple=False).squeeze(-1)
        _, worst = torch.topk(flat_sim[kept], k=current - target, largest=True, sorted=False)
        flat[kept[worst]] = False
    elif current < target:
        free = (~flat).nonzero(as_tuple=False).squeeze(-1)
        _, best = torch.topk(flat_sim[free], k=min(target - current, free.numel()), largest=False, sorted=False)
        flat[free[best]] = True
    return flat.nonzero().flatten().tolist()


@settings(max_examples=120, deadline=None)
@given(x=videos, ratio=st.sampled_from(RATIOS))
def test_vidcom2_authors_equals_the_official_code(x: torch.Tensor, ratio: float) -> None:
    sel = vcast.select_tokens(x, method="vidcom2", retain_ratio=ratio, reproduce="authors")
    assert _flat(sel) == vidcom2_authors(x, ratio)


@settings(max_examples=120, deadline=None)
@given(x=videos, ratio=st.sampled_from(RATIOS))
def test_vidcom2_vllm_equals_vllm(x: torch.Tensor, ratio: float) -> None:
    t, n, _ = x.shape
    sel = vcast.select_tokens(x, method="vidcom2", retain_ratio=ratio, reproduce="vllm")
    assert sel.keep_index.tolist() == vidcom2_vllm(x, 1.0 - ratio)
    assert sel.frame_budget.tolist() == torch.bincount(sel.keep_index // n, minlength=t).tolist()


def test_vidcom2_default_budgets_follow_the_official_quotas() -> None:
    # T=2, N=4, r=0.5: official quotas [1, 3]; the default used to give [2, 2] (floor first).
    x = torch.zeros(2, 4, 8)
    x[0] = torch.randn(4, 8) * 0.01 + 1.0
    x[1] = torch.randn(4, 8) * 3.0
    official = vidcom2_authors(x, 0.5)[1]
    assert official == [1, 3]
    assert vcast.select_tokens(x, method="vidcom2", retain_ratio=0.5).frame_budget.tolist() == official
    # whenever the official counts sum to K, the default gives those counts on most clips
    agree = total = 0
    for seed in range(40):
        v = make_video(8, 36, 12, "random", seed, torch.float32)
        v[seed % 8] *= 3.0
        counts = vidcom2_authors(v, 0.25)[1]
        if sum(counts) == 72:
            total += 1
            agree += counts == vcast.select_tokens(v, method="vidcom2", retain_ratio=0.25).frame_budget.tolist()
    assert total >= 10 and agree >= 0.8 * total


# DyCoke ------------------------------------------------------------------------------------------


def dycoke_authors(x: torch.Tensor, merging_ratio: float) -> tuple[list[int], list[int]]:
    """Mirrors KD-TAO/DyCoke llava/model/llava_arch.py: dycole_ttm (both passes) on [T*N, D]."""
    t, n, d = x.shape
    feature = x.reshape(t * n, d)
    num_frames = feature.shape[0] // n
    keep_fraction = 1 - merging_ratio
    kept: dict[int, list[int]] = {}
    for i in range(0, num_frames - 1, 2):
        f1, f2 = feature[i * n:(i + 1) * n], feature[(i + 1) * n:(i + 2) * n]
        sim = F.cosine_similarity(F.normalize(f1, p=2, dim=1), F.normalize(f2, p=2, dim=1), dim=1)
        kept[i] = list(range(n))
        kept[i + 1] = sorted(sim.topk(int(keep_fraction * n), largest=False).indices.tolist())
    windows = list(range(0, num_frames - 4, 4))
    if not windows:
        raise RuntimeError("stack expects a non-empty TensorList")  # what the official code raises
    for i in windows:
        sim = F.cosine_similarity(feature[i * n:(i + 1) * n], feature[(i + 2) * n:(i + 3) * n], dim=1)
        kept[i + 2] = sorted(sim.topk(int(keep_fraction * n), largest=False).indices.tolist())
    keep, budget = [], []
    for f in range(num_frames):
        keep += [f * n + j for j in kept.get(f, [])]
        budget.append(len(kept.get(f, [])))
    return keep, budget


@settings(max_examples=120, deadline=None)
@given(x=videos.filter(lambda v: v.shape[0] >= 5), ratio=st.sampled_from([1.0, 0.5, 0.475, 0.33, 0.25]))
def test_dycoke_authors_equals_the_official_ttm(x: torch.Tensor, ratio: float) -> None:
    sel = vcast.select_tokens(x, method="dycoke", retain_ratio=ratio, reproduce="authors")
    assert _flat(sel) == dycoke_authors(x, published_rate(ratio))


def test_dycoke_authors_quirks_and_limits() -> None:
    assert published_rate(0.475) == 0.7 and published_rate(0.25) == 1.0
    x = make_video(17, 10, 8, "random", 5, torch.float32)
    sel = vcast.select_tokens(x, method="dycoke", retain_ratio=0.475, reproduce="authors")
    b = sel.frame_budget.tolist()
    assert b[16] == 0 and b[14] == 3  # odd T: the last frame is dropped; 12 < T - 4, so 14 is pruned
    even = vcast.select_tokens(x[:16], method="dycoke", retain_ratio=0.475, reproduce="authors").frame_budget
    assert even.tolist() == [10, 3, 3, 3] * 3 + [10, 3, 10, 3]  # the last window's 4j+2 stays whole
    for t in (1, 4):
        with pytest.raises(ReproduceError, match="T >= 5"):
            vcast.select_tokens(make_video(t, 10, 8, "random", 0, torch.float32), method="dycoke",
                                reproduce="authors", retain_ratio=0.5)
        with pytest.raises(RuntimeError):
            dycoke_authors(make_video(t, 10, 8, "random", 0, torch.float32), 0.7)
    with pytest.raises(ReproduceError, match="1/4"):
        vcast.select_tokens(x, method="dycoke", reproduce="authors", retain_ratio=0.2)


# Every mode --------------------------------------------------------------------------------------


def test_methods_without_a_published_reference_reject_reproduce() -> None:
    for name in ("random", "uniform", "pool"):
        with pytest.raises(ConfigError, match="its modes: none"):
            make_config(name, reproduce="authors")
    with pytest.raises(ConfigError, match="no reproduce='vllm' mode"):
        make_config("dycoke", reproduce="vllm")
    with pytest.raises(ConfigError):
        vcast.VCastConfig(reproduce="paper")
    modes = {n: vcast.get_method(n).reproduce_modes for n in vcast.list_methods()}
    assert modes == {"vcast": ("authors",), "vcast-robust": (), "random": (), "uniform": (), "pool": (),
                     "evs": ("vllm",), "vidcom2": ("authors", "vllm"), "dycoke": ("authors",),
                     "visionzip": ("authors",), "fastvid": ("authors",)}


def test_reproduce_round_trips_through_dicts() -> None:
    cfg = make_config("vidcom2", retain_ratio=0.2, reproduce="vllm")
    assert type(cfg).from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["reproduce"] == "vllm"
