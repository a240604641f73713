"""The vectorised V-CAST core against the per-frame loop reference and the written specification."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vcast
from vcast.core.budget import total_budget
from vcast.core.reference import loop_select_tokens
from vcast.errors import ConfigError, InputError


def _features(t: int, n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, n, d, generator=g) * torch.rand(t, 1, 1, generator=g).add(0.5)


@pytest.mark.parametrize("seed", range(40))
def test_matches_loop_reference_on_random_shapes(seed: int) -> None:
    g = torch.Generator().manual_seed(1000 + seed)
    t = int(torch.randint(1, 65, (1,), generator=g))
    n = int(torch.randint(1, 257, (1,), generator=g))
    d = int(torch.randint(1, 48, (1,), generator=g))
    ratio = float(torch.rand(1, generator=g).clamp(0.01, 1.0))
    x = _features(t, n, d, seed)
    ours = vcast.select_tokens(x, retain_ratio=ratio)
    ref = loop_select_tokens(x, retain_ratio=ratio)
    assert torch.equal(ours.frame_budget, ref.frame_budget)
    assert torch.equal(ours.keep_index, ref.keep_index)
    torch.testing.assert_close(ours.curvature, ref.curvature, atol=1e-5, rtol=0)


@pytest.mark.parametrize("t,n", [(1, 1), (1, 7), (2, 5), (3, 1), (64, 196), (5, 256)])
@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.25, 0.5, 1.0])
def test_matches_loop_reference_edge_shapes(t: int, n: int, ratio: float) -> None:
    x = _features(t, n, 8, t * 1000 + n)
    ours = vcast.select_tokens(x, retain_ratio=ratio)
    ref = loop_select_tokens(x, retain_ratio=ratio)
    assert torch.equal(ours.frame_budget, ref.frame_budget)
    assert torch.equal(ours.keep_index, ref.keep_index)


@settings(max_examples=60, deadline=None)
@given(
    t=st.integers(1, 24),
    n=st.integers(1, 40),
    d=st.integers(1, 12),
    ratio=st.floats(0.001, 1.0),
    temperature=st.floats(0.05, 5.0),
    min_k=st.integers(0, 5),
    seed=st.integers(0, 2**16),
)
def test_selection_invariants(t, n, d, ratio, temperature, min_k, seed) -> None:
    x = _features(t, n, d, seed)
    cfg = vcast.VCastConfig(retain_ratio=ratio, temperature=temperature, min_tokens_per_frame=min_k)
    sel = vcast.select_tokens(x, cfg)
    k = total_budget(t, n, ratio, min_k)
    assert sel.num_kept == k == int(sel.frame_budget.sum())
    assert sel.keep_index.dtype == torch.long and sel.frame_budget.shape == (t,)
    assert bool((sel.keep_index[1:] > sel.keep_index[:-1]).all())
    assert int(sel.keep_index.min()) >= 0 and int(sel.keep_index.max()) < t * n
    assert bool((sel.frame_budget >= min(min_k, n)).all()) and bool((sel.frame_budget <= n).all())
    counts = torch.bincount(sel.keep_index // n, minlength=t)
    assert torch.equal(counts, sel.frame_budget)
    assert torch.equal(vcast.select_tokens(x, cfg).keep_index, sel.keep_index)  # deterministic


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 12), st.integers(1, 20)), min_size=1, max_size=5),
    ratio=st.floats(0.01, 1.0),
    curvature=st.sampled_from(["angle", "robust"]),
    seed=st.integers(0, 2**16),
)
def test_batch_equals_one_by_one(shapes, ratio, curvature, seed) -> None:
    videos = [_features(t, n, 6, seed + i) for i, (t, n) in enumerate(shapes)]
    cfg = vcast.VCastConfig(retain_ratio=ratio, curvature=curvature)
    batch = vcast.select_tokens(videos, cfg)
    assert isinstance(batch, list) and len(batch) == len(videos)
    for v, sel in zip(videos, batch):
        alone = vcast.select_tokens(v, cfg)
        assert torch.equal(sel.keep_index, alone.keep_index)
        assert torch.equal(sel.frame_budget, alone.frame_budget)
        torch.testing.assert_close(sel.curvature, alone.curvature, atol=1e-5, rtol=0)


def test_curvature_definition() -> None:
    # Equal steps of angle a along a great circle: consecutive chords turn by a, so c = 1 - cos(a);
    # a back-and-forth trajectory reverses (c = 2); endpoints are 1.
    a = 0.1
    angles = torch.arange(5) * a
    x = torch.stack([torch.cos(angles), torch.sin(angles), torch.zeros(5)], -1).unsqueeze(1)
    c = vcast.select_tokens(x, retain_ratio=1.0).curvature
    assert c[0] == 1 and c[-1] == 1
    torch.testing.assert_close(c[1:4], torch.full((3,), 1 - math.cos(a)), atol=1e-5, rtol=0)
    x = torch.zeros(5, 1, 3)
    x[:, 0, 0] = 1.0
    x[:, 0, 1] = torch.tensor([0.0, 0.2, 0.0, 0.2, 0.0])
    c = vcast.select_tokens(x, retain_ratio=1.0).curvature
    torch.testing.assert_close(c[1:4], torch.full((3,), 2.0), atol=1e-5, rtol=0)
    assert torch.equal(vcast.select_tokens(torch.randn(2, 4, 3)).curvature, torch.ones(2))


def test_budget_follows_curvature_with_largest_remainder() -> None:
    # Hand-computed allocation for known curvature: weights softmax(c/0.7).
    c = torch.tensor([1.0, 0.0, 2.0, 0.0, 1.0])
    w = torch.softmax(c / 0.7, 0)
    t, n, ratio = 5, 40, 0.25  # no frame reaches its cap N here
    k = total_budget(t, n, ratio)
    raw = [float(w[i]) * (k - t) for i in range(t)]
    expected = [1 + math.floor(v) for v in raw]
    order = sorted(range(t), key=lambda i: (-(raw[i] - math.floor(raw[i])), i))
    for i in order[: k - sum(expected)]:
        expected[i] += 1
    from vcast.core.budget import allocate_frames
    from vcast.core.layout import BatchLayout

    layout = BatchLayout.build([torch.zeros(t, n, 1)], torch.device("cpu"))
    got = allocate_frames(w, torch.tensor([k]), layout, 1)
    assert got.tolist() == expected


def test_capped_frames_pass_leftovers_on() -> None:
    # One frame takes nearly all weight: it is capped at N and the rest is spread in passes.
    from vcast.core.budget import allocate_frames
    from vcast.core.layout import BatchLayout

    layout = BatchLayout.build([torch.zeros(4, 3, 1)], torch.device("cpu"))
    w = torch.tensor([0.97, 0.01, 0.01, 0.01])
    got = allocate_frames(w, torch.tensor([9]), layout, 1)
    assert got.tolist() == [3, 2, 2, 2]
    got = allocate_frames(w, torch.tensor([12]), layout, 1)
    assert got.tolist() == [3, 3, 3, 3]


def test_spatial_score_prefers_outliers_and_large_norms() -> None:
    x = torch.ones(1, 6, 4)
    x[0, 2] = torch.tensor([-1.0, 1.0, -1.0, 1.0])  # points away from the frame mean
    x[0, 4] *= 5  # large norm, same direction
    sel = vcast.select_tokens(x, retain_ratio=2 / 6)
    assert sel.keep_index.tolist() == [2, 4]


def test_ties_go_to_lower_index() -> None:
    sel = vcast.select_tokens(torch.ones(3, 8, 4), retain_ratio=0.25)
    assert sel.frame_budget.tolist() == [2, 2, 2]
    assert sel.keep_index.tolist() == [0, 1, 8, 9, 16, 17]


def test_ratio_one_keeps_everything() -> None:
    x = torch.randn(7, 9, 5)
    sel = vcast.select_tokens(x, retain_ratio=1.0)
    assert torch.equal(sel.keep_index, torch.arange(63))
    assert torch.equal(sel.kept_features(x), x.reshape(63, 5))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_compute_in_float32(dtype: torch.dtype) -> None:
    x = _features(16, 49, 32, 3).to(dtype)
    sel = vcast.select_tokens(x, retain_ratio=0.2)
    ref = vcast.select_tokens(x.float(), retain_ratio=0.2)
    assert torch.equal(sel.keep_index, ref.keep_index)
    assert sel.curvature.dtype == torch.float32


def test_config_overrides_and_roundtrip() -> None:
    cfg = vcast.VCastConfig(retain_ratio=0.3, temperature=0.5)
    assert vcast.VCastConfig.from_dict(cfg.to_dict()) == cfg
    x = torch.randn(6, 10, 4)
    a = vcast.select_tokens(x, cfg, retain_ratio=0.1)
    b = vcast.select_tokens(x, vcast.VCastConfig(retain_ratio=0.1, temperature=0.5))
    assert torch.equal(a.keep_index, b.keep_index)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan"), float("inf"), "half", True])
def test_bad_ratio_raises(bad) -> None:
    with pytest.raises(ConfigError, match="retain_ratio"):
        vcast.VCastConfig(retain_ratio=bad)
    with pytest.raises(ConfigError):
        vcast.select_tokens(torch.randn(2, 3, 4), retain_ratio=bad)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperature": 0}, "temperature"),
        ({"min_tokens_per_frame": -1}, "min_tokens_per_frame"),
        ({"curvature": "wiggly"}, "curvature"),
        ({"positions": "sideways"}, "positions"),
        ({"prune_at": "vision"}, "prune_at"),
        ({"retain_ratio": "auto", "min_ratio": 0.6, "max_ratio": 0.2}, "min_ratio"),
    ],
)
def test_bad_config_raises(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        vcast.VCastConfig(**kwargs)


def test_unknown_override_and_dict_key_raise() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        vcast.select_tokens(torch.randn(2, 3, 4), ratio=0.5)
    with pytest.raises(ConfigError, match="unknown"):
        vcast.VCastConfig.from_dict({"retain_ratio": 0.5, "bogus": 1})


@pytest.mark.parametrize(
    "features,match",
    [
        (torch.randn(0, 4, 3), "empty"),
        (torch.randn(3, 0, 3), "empty"),
        (torch.randn(12, 3), "rank"),
        (torch.randn(1, 2, 3, 4), "rank"),
        (torch.ones(2, 3, 4, dtype=torch.long), "floating"),
        ([], "empty list"),
        ([torch.randn(2, 3, 4), torch.randn(2, 3, 5)], "D must match"),
        ("not a tensor", "torch.Tensor"),
    ],
)
def test_bad_features_raise(features, match) -> None:
    with pytest.raises(InputError, match=match):
        vcast.select_tokens(features)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_features_raise(value: float) -> None:
    x = torch.randn(4, 5, 6)
    x[2, 3, 1] = value
    with pytest.raises(InputError, match="NaN or inf"):
        vcast.select_tokens(x)


def test_unknown_constructor_option_is_a_config_error_with_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"'retain' \(did you mean 'retain_ratio'\?\)"):
        vcast.VCastConfig(retain=0.3)
    with pytest.raises(ConfigError, match="positional"):
        vcast.VCastConfig(*range(20))


CONFIGS = [{}, {"curvature": "robust"}, {"token_curvature_weight": 0.5}, {"retain_ratio": "auto"}]


@pytest.mark.parametrize("kwargs", CONFIGS)
@pytest.mark.parametrize("scale", [2.0**70, 1e30, 1e20, 1e-20, 1e-30, 2.0**-80])
def test_selection_does_not_depend_on_the_feature_scale(kwargs, scale) -> None:
    # Squared norms of 1e20 features overflow fp32 and those of 1e-20 underflow: both used to move budgets.
    x = _features(12, 49, 96, 7)
    ref = vcast.select_tokens(x, **kwargs)
    got = vcast.select_tokens(x * scale, **kwargs)
    assert torch.equal(got.frame_budget, ref.frame_budget)
    assert torch.equal(got.keep_index, ref.keep_index)
    unchecked = vcast.select_tokens(x * scale, check_finite_features=False, **kwargs)
    assert torch.equal(unchecked.frame_budget, ref.frame_budget)  # budgets need no sync to be right


def test_frame_directions_are_bit_identical_to_normalize_on_ordinary_means() -> None:
    from vcast.core.select import frame_directions

    means = torch.randn(64, 3584) * torch.rand(64, 1) * 10
    assert torch.equal(frame_directions(means), torch.nn.functional.normalize(means, dim=-1, eps=1e-6))
    assert torch.equal(frame_directions(torch.zeros(2, 5)), torch.zeros(2, 5))


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_nan_features_unchecked_still_give_a_selection_of_the_configured_size(kwargs) -> None:
    x = _features(10, 20, 8, 3)
    x[3, 5, 2] = float("nan")
    x[7] = float("inf")
    sel = vcast.select_tokens(x, check_finite_features=False, **kwargs)  # used to die: "index -1 is out of bounds"
    assert int(sel.frame_budget.sum()) == sel.num_kept == sel.keep_index.unique().numel()
    assert bool((sel.frame_budget >= 1).all()) and int(sel.keep_index.max()) < 200
    if kwargs.get("retain_ratio") != "auto":
        assert sel.num_kept == round(200 * 0.25)


def test_min_tokens_per_frame_at_or_above_n_warns_that_nothing_is_pruned() -> None:
    x = _features(4, 9, 8, 1)
    with pytest.warns(UserWarning, match="nothing is pruned"):
        sel = vcast.select_tokens(x, min_tokens_per_frame=12)
    assert sel.num_kept == 36
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vcast.select_tokens(x, min_tokens_per_frame=8)  # below N: a floor, no warning
        vcast.select_tokens(x[:, :1], min_tokens_per_frame=1)  # the default floor on N = 1
        vcast.select_tokens(x, min_tokens_per_frame=12, retain_ratio=1.0)  # keeping all was asked for
