"""vcast's methods in vLLM's form: the mask's True count always equals the count known before encoding."""

import inspect

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vcast
from vcast.integrations.vllm import (
    AUTO_MESSAGE,
    compute_retained_tokens_count,
    compute_retention_mask,
    pruning_functions,
    vllm_methods,
)

METHODS = vllm_methods()

# Parameter names of vLLM's own functions (vllm/multimodal/video_prune/evs.py, vidcom2.py).
VLLM_COUNT_PARAMS = ["tokens_per_frame", "num_frames", "q"]
VLLM_MASK_PARAMS = ["video_embeds", "video_size_thw", "spatial_merge_size", "q"]


def test_every_pruning_method_and_only_those():
    assert {"vcast", "vcast-robust", "random", "uniform", "evs", "vidcom2", "dycoke"} <= set(METHODS)
    assert not {"pool", "visionzip", "fastvid"} & set(METHODS)  # merging methods
    assert set(METHODS) == {m for m in vcast.list_methods() if not vcast.get_method(m).merges}


grids = st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 5), st.sampled_from([1, 2]))


@settings(max_examples=40, deadline=None)
@given(method=st.sampled_from(METHODS), grid=grids, q=st.floats(0.0, 0.999), seed=st.integers(0, 2**16))
def test_mask_count_equals_count_and_mask_is_the_methods_selection(method, grid, q, seed):
    t, rows, cols, m = grid
    n = rows * cols
    embeds = torch.randn(t * n, 24, generator=torch.Generator().manual_seed(seed))
    k = compute_retained_tokens_count(n, t, q, method=method)
    mask = compute_retention_mask(embeds, torch.tensor([t, rows * m, cols * m]), m, q, method=method)
    assert mask.dtype == torch.bool and mask.shape == (t * n,)
    assert int(mask.sum()) == k == vcast.core.budget.total_budget(t, n, 1.0 - q)
    # Independent path: vcast.select_tokens on the [T, N, D] view, at retain_ratio = 1 - q.
    sel = vcast.select_tokens(embeds.view(t, n, 24), method=method, retain_ratio=1.0 - q)
    assert torch.equal(mask, sel.keep_mask().reshape(-1))


def test_vcast_in_vllm_form_is_select_tokens():
    embeds = torch.randn(4 * 16, 32, generator=torch.Generator().manual_seed(0))
    ref = vcast.select_tokens(embeds.view(4, 16, 32), vcast.VCastConfig(retain_ratio=0.2, curvature="robust"))
    mask = compute_retention_mask(embeds, (4, 8, 8), 2, 0.8, method="vcast-robust")
    assert torch.equal(mask, ref.keep_mask().reshape(-1))
    assert int(mask.sum()) == compute_retained_tokens_count(16, 4, 0.8, method="vcast-robust") == 13


def test_channels_scores_only_the_llm_embedding():
    """Qwen3-VL in vLLM appends deepstack features: only the first `channels` decide."""
    g = torch.Generator().manual_seed(1)
    main = torch.randn(3 * 9, 8, generator=g)
    a = torch.cat([main, torch.randn(27, 16, generator=g)], dim=1)
    b = torch.cat([main, 100 * torch.randn(27, 16, generator=g)], dim=1)
    ma = compute_retention_mask(a, (3, 6, 6), 2, 0.6, channels=8)
    assert torch.equal(ma, compute_retention_mask(b, (3, 6, 6), 2, 0.6, channels=8))
    assert torch.equal(ma, compute_retention_mask(main, (3, 6, 6), 2, 0.6))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_embeddings(dtype):
    embeds = torch.randn(2 * 4, 8, generator=torch.Generator().manual_seed(2))
    mask = compute_retention_mask(embeds.to(dtype), (2, 4, 4), 2, 0.5)
    assert int(mask.sum()) == 4


def test_q_zero_keeps_everything_and_options_pass_through():
    embeds = torch.randn(16, 8)
    assert bool(compute_retention_mask(embeds, (1, 8, 8), 2, 0.0).all())
    assert compute_retained_tokens_count(16, 4, 0.99, min_tokens_per_frame=2) == 8  # floor: 2 per frame
    hot = compute_retention_mask(torch.randn(64, 8), (4, 8, 8), 2, 0.75, temperature=0.05)
    assert int(hot.sum()) == 16


def test_pruning_functions_have_vllms_signatures():
    count_fn, mask_fn = pruning_functions("vcast", temperature=0.5)
    assert list(inspect.signature(count_fn).parameters) == VLLM_COUNT_PARAMS
    assert list(inspect.signature(mask_fn).parameters) == VLLM_MASK_PARAMS
    k = count_fn(tokens_per_frame=16, num_frames=4, q=0.75)
    mask = mask_fn(torch.randn(64, 8), torch.tensor([4, 8, 8]), spatial_merge_size=2, q=0.75)
    assert int(mask.sum()) == k == 16
    with pytest.raises(vcast.ConfigError, match="temperature"):
        pruning_functions("vcast", temperature=-1.0)  # validated when built, not at the first request


def test_auto_ratio_cannot_be_sized_before_encoding():
    with pytest.raises(vcast.ConfigError) as e:
        compute_retained_tokens_count(16, 4, 0.5, retain_ratio="auto")
    assert str(e.value) == AUTO_MESSAGE and "before the vision encoder runs" in AUTO_MESSAGE
    with pytest.raises(vcast.ConfigError, match="--video-pruning-rate"):
        compute_retained_tokens_count(16, 4, 0.5, retain_ratio=0.3)


@pytest.mark.parametrize("method", ["pool", "visionzip", "fastvid"])
def test_merging_methods_are_refused(method):
    with pytest.raises(vcast.ConfigError, match="merges tokens"):
        compute_retained_tokens_count(16, 4, 0.5, method=method)


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="nope"), "unknown pruning method"),
    (dict(prune_at="vision:1"), "prune_at"),
    (dict(positions="compact"), "positions"),
    (dict(method="evs", reproduce="vllm"), "VCAST_VLLM_FIXES=1"),
    (dict(reproduce="authors"), "another code's token counts"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(vcast.ConfigError, match=match):
        compute_retained_tokens_count(16, 4, 0.5, **kwargs)


@pytest.mark.parametrize("q", [1.0, -0.1, float("nan"), True, "0.5"])
def test_bad_rate(q):
    with pytest.raises(vcast.ConfigError, match=r"\[0, 1\)"):
        compute_retained_tokens_count(16, 4, q)


@pytest.mark.parametrize("embeds, size, merge, match", [
    (torch.randn(63, 8), (4, 8, 8), 2, r"\[64, D\]"),
    (torch.randn(64), (4, 8, 8), 2, r"\[64, D\]"),
    (torch.randn(64, 8), (4, 8, 7), 2, "divisible"),
    (torch.randn(64, 8), (4, 8), 2, r"\(T, H, W\)"),
    (torch.randn(64, 8), (4, 8, 8), 0, "spatial_merge_size"),
])
def test_bad_inputs(embeds, size, merge, match):
    with pytest.raises(vcast.InputError, match=match):
        compute_retention_mask(embeds, size, merge, 0.5)


def test_nan_embeddings_are_refused():
    embeds = torch.randn(64, 8)
    embeds[5, 0] = float("nan")
    with pytest.raises(vcast.InputError, match="NaN"):
        compute_retention_mask(embeds, (4, 8, 8), 2, 0.5)


def test_a_method_breaking_its_count_is_caught(monkeypatch):
    from vcast.methods import registry

    spec = registry.get_method("uniform")
    broken = registry.MethodSpec("uniform", spec.config_cls, lambda f, c: spec.select(f, c.replace(retain_ratio=1.0)))
    monkeypatch.setitem(registry._REGISTRY, "uniform", broken)
    with pytest.raises(vcast.VCastError, match="kept 64 tokens but its count"):
        compute_retention_mask(torch.randn(64, 8), (4, 8, 8), 2, 0.5, method="uniform")
