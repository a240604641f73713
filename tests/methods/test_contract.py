"""The method contract, checked for every registered method (the baselines and V-CAST alike)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vcast
from vcast.core.budget import total_budget
from vcast.errors import ConfigError, InputError
from vcast.methods import get_method, list_methods, make_config
from vcast.methods.grid import config_with_grid

METHODS = list_methods()
BASELINES = ["random", "uniform", "pool", "evs", "vidcom2", "dycoke", "visionzip", "fastvid"]
MERGING = {"pool", "visionzip", "fastvid"}


def _video(t: int, n: int, d: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A video-like clip: a slow random walk per token with a scene cut in the middle."""
    g = torch.Generator().manual_seed(seed)
    steps = 0.3 * torch.randn(t, n, d, generator=g)
    steps[0] = torch.randn(n, d, generator=g)
    if t > 3:
        steps[t // 2] = 3.0 * torch.randn(n, d, generator=g)
    return steps.cumsum(0).to(dtype)


def _config(method: str, ratio: float, grid: tuple[int, int] | None = None, **kw):
    cfg = make_config(method, retain_ratio=ratio, **kw)
    return config_with_grid(cfg, grid) if grid else cfg


def check_contract(sel: vcast.Selection, x: torch.Tensor, ratio: float, merges: bool) -> None:
    """Every invariant of the Selection contract."""
    t, n, d = x.shape
    k = total_budget(t, n, ratio)
    keep = sel.keep_index
    assert keep.dtype == torch.long and keep.shape == (k,)
    assert keep.device == x.device
    if k > 1:
        assert bool((keep[1:] > keep[:-1]).all()), "keep_index must be strictly increasing"
    assert int(keep.min()) >= 0 and int(keep.max()) < t * n
    assert sel.frame_budget.dtype == torch.long and sel.frame_budget.shape == (t,)
    assert int(sel.frame_budget.sum()) == k
    assert torch.equal(sel.frame_budget, torch.bincount(keep // n, minlength=t))
    assert sel.curvature.shape == (t,) and sel.curvature.dtype == torch.float32
    assert bool(torch.isfinite(sel.curvature).all())
    assert (sel.num_frames, sel.tokens_per_frame) == (t, n)
    if merges:
        assert sel.merged_features is not None
        assert sel.merged_features.shape == (k, d) and sel.merged_features.dtype == x.dtype
        assert bool(torch.isfinite(sel.merged_features.float()).all())
    else:
        assert sel.merged_features is None


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_contract_at_many_ratios(method: str, ratio: float) -> None:
    x = _video(12, 36, 16, seed=3)
    spec = get_method(method)
    sel = spec.select(x, _config(method, ratio))
    check_contract(sel, x, ratio, spec.merges)


def test_all_baselines_registered() -> None:
    assert set(BASELINES) <= set(METHODS)
    for name in BASELINES:
        spec = get_method(name)
        assert spec.merges == (name in MERGING)
        assert spec.summary and spec.config_cls.method == name


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(method: str, dtype: torch.dtype) -> None:
    x = _video(8, 25, 12, seed=5, dtype=dtype)
    spec = get_method(method)
    sel = spec.select(x, _config(method, 0.3))
    check_contract(sel, x, 0.3, spec.merges)


@pytest.mark.parametrize("method", METHODS)
def test_deterministic(method: str) -> None:
    x = _video(10, 36, 8, seed=7)
    spec = get_method(method)
    a = spec.select(x, _config(method, 0.3))
    b = spec.select(x.clone(), _config(method, 0.3))
    assert torch.equal(a.keep_index, b.keep_index) and torch.equal(a.frame_budget, b.frame_budget)
    if a.merged_features is not None:
        assert torch.equal(a.merged_features, b.merged_features)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ratio_one_keeps_everything_unchanged(method: str, dtype: torch.dtype) -> None:
    x = _video(9, 16, 8, seed=11, dtype=dtype)
    sel = get_method(method).select(x, _config(method, 1.0))
    assert torch.equal(sel.keep_index, torch.arange(9 * 16))
    assert torch.equal(sel.kept_features(x), x.reshape(-1, 8))


@pytest.mark.parametrize("method", METHODS)
def test_kept_features_are_originals_or_merged_at_kept_positions(method: str) -> None:
    x = _video(8, 16, 6, seed=13)
    spec = get_method(method)
    sel = spec.select(x, _config(method, 0.25))
    kept = sel.kept_features(x)
    original = x.reshape(-1, 6)[sel.keep_index]
    assert kept.shape == original.shape
    if not spec.merges:
        assert torch.equal(kept, original)


@pytest.mark.parametrize("method", METHODS)
def test_batched_run_matches_single(method: str) -> None:
    videos = [_video(6, 16, 8, seed=1), _video(3, 16, 8, seed=2), _video(5, 9, 8, seed=3)]
    spec = get_method(method)
    cfg = _config(method, 0.4)
    for v, sel in zip(videos, spec.run(videos, cfg)):
        single = spec.select(v, cfg)
        assert torch.equal(sel.keep_index, single.keep_index)


@pytest.mark.parametrize("method", BASELINES)
def test_bad_inputs_raise_input_error(method: str) -> None:
    spec = get_method(method)
    cfg = _config(method, 0.5)
    bad = _video(4, 9, 5, seed=0)
    bad[2, 3, 1] = float("nan")
    inf = _video(4, 9, 5, seed=0)
    inf[1, 0, 0] = float("inf")
    for features in (bad, inf, torch.zeros(4, 9), torch.zeros(0, 9, 5), torch.zeros(4, 0, 5),
                     torch.zeros(4, 9, 5, dtype=torch.long), "not a tensor"):
        with pytest.raises(InputError):
            spec.select(features, cfg)


@pytest.mark.parametrize("method", BASELINES)
def test_config_validation_and_roundtrip(method: str) -> None:
    cls = get_method(method).config_cls
    for ratio in (0.0, -0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(ConfigError):
            cls(retain_ratio=ratio)
    cfg = make_config(method, retain_ratio=0.3, seed=4)
    data = cfg.to_dict()
    assert data["method"] == method
    assert cls.from_dict(data) == cfg
    with pytest.raises(ConfigError):
        cfg.replace(no_such_option=1)


@settings(max_examples=40, deadline=None)
@given(
    method=st.sampled_from(BASELINES),
    t=st.integers(1, 14),
    h=st.integers(1, 6),
    w=st.integers(1, 6),
    d=st.integers(1, 9),
    ratio=st.floats(0.001, 1.0),
    seed=st.integers(0, 2**16),
)
def test_contract_property(method: str, t: int, h: int, w: int, d: int, ratio: float, seed: int) -> None:
    x = _video(t, h * w, d, seed)
    spec = get_method(method)
    sel = spec.select(x, _config(method, ratio, grid=(h, w)))
    check_contract(sel, x, ratio, spec.merges)
    if spec.merges:  # merged tokens are convex-ish combinations: they stay within the data range
        lo, hi = float(x.min()), float(x.max())
        m = sel.merged_features
        assert float(m.min()) >= lo - 1e-4 * (1 + abs(lo)) and float(m.max()) <= hi + 1e-4 * (1 + abs(hi))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu_selection(method: str) -> None:
    x = _video(12, 36, 16, seed=21)
    spec = get_method(method)
    cfg = _config(method, 0.3)
    cpu = spec.select(x, cfg)
    gpu = spec.select(x.cuda(), cfg)
    check_contract(gpu, x.cuda(), 0.3, spec.merges)
    assert torch.equal(cpu.frame_budget, gpu.frame_budget.cpu())
    assert torch.equal(cpu.keep_index, gpu.keep_index.cpu())
    if cpu.merged_features is not None:
        torch.testing.assert_close(cpu.merged_features, gpu.merged_features.cpu(), rtol=1e-4, atol=1e-4)
