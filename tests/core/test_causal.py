"""The causal (streaming) V-CAST rule and the cache eviction rule, against offline V-CAST and
independent per-frame references."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vcast
from vcast.core.budget import total_budget
from vcast.core.causal import (
    LOOKAHEAD_FRAMES,
    REPAY_HORIZON,
    WEIGHT_BINS,
    CausalState,
    causal_select,
    causal_step,
    trajectory,
    water_level,
)
from vcast.core.evict import eviction_keys, skeleton_mask, skeleton_stride, survivors
from vcast.errors import ConfigError, InputError


def _features(t: int, n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, n, d, generator=g) * torch.rand(t, 1, 1, generator=g).add(0.5)


def _run(x: torch.Tensor, cfg: vcast.VCastConfig, sizes: list[int]):
    """Commit ``x`` in chunks of ``sizes`` (each with the next frames as lookahead); the steps."""
    steps, state, start = [], CausalState(), 0
    la = LOOKAHEAD_FRAMES[cfg.curvature]
    for size in sizes:
        end = start + size
        ahead = x[end:end + la]
        step = causal_step(x[start:end], state, trajectory(ahead) if ahead.shape[0] else None, cfg)
        steps.append(step)
        state, start = step.state, end
    return steps


def _chunks(total: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    sizes, left = [], total
    while left:
        s = min(int(torch.randint(1, 6, (1,), generator=g)), left)
        sizes.append(s)
        left -= s
    return sizes


@settings(max_examples=60, deadline=None)
@given(t=st.integers(1, 24), n=st.integers(1, 30), d=st.integers(1, 10), ratio=st.floats(0.01, 1.0),
       temperature=st.floats(0.05, 5.0), min_k=st.integers(0, 4), curvature=st.sampled_from(["angle", "robust"]),
       seed=st.integers(0, 2**16))
def test_one_commit_of_the_whole_clip_is_offline_vcast(t, n, d, ratio, temperature, min_k, curvature, seed) -> None:
    x = _features(t, n, d, seed)
    cfg = vcast.VCastConfig(retain_ratio=ratio, temperature=temperature, min_tokens_per_frame=min_k,
                            curvature=curvature)
    step = causal_step(x, CausalState(), None, cfg)
    offline = vcast.select_tokens(x, cfg)
    assert torch.equal(step.selection.keep_index, offline.keep_index)
    assert torch.equal(step.selection.frame_budget, offline.frame_budget)
    assert torch.equal(step.selection.curvature, offline.curvature)
    assert step.state.frames == t and step.state.spent == offline.num_kept


@settings(max_examples=60, deadline=None)
@given(t=st.integers(1, 40), n=st.integers(1, 24), ratio=st.floats(0.02, 1.0), min_k=st.integers(0, 3),
       curvature=st.sampled_from(["angle", "robust"]), seed=st.integers(0, 2**16))
def test_chunked_commits_keep_the_selection_invariants(t, n, ratio, min_k, curvature, seed) -> None:
    x = _features(t, n, 6, seed)
    cfg = vcast.VCastConfig(retain_ratio=ratio, min_tokens_per_frame=min_k, curvature=curvature)
    steps = _run(x, cfg, _chunks(t, seed))
    spent = 0
    for step in steps:
        sel = step.selection
        k = sel.num_kept
        spent += k
        assert k == int(sel.frame_budget.sum())
        assert bool((sel.frame_budget >= min(min_k, n)).all()) and bool((sel.frame_budget <= n).all())
        assert bool((sel.keep_index[1:] > sel.keep_index[:-1]).all())
        assert torch.equal(torch.bincount(sel.keep_index // n, minlength=sel.num_frames), sel.frame_budget)
        # the kept tokens of a frame are its best-ranked ones
        kept_rank = step.token_rank.reshape(-1)[sel.keep_index]
        frame = sel.keep_index // n
        assert bool((kept_rank < sel.frame_budget[frame]).all())
    assert steps[-1].state.spent == spent and steps[-1].state.frames == t
    # the spend tracks the offline target within the repayment horizon
    assert abs(spent - total_budget(t, n, ratio, min_k)) <= (REPAY_HORIZON + 1) * n
    again = _run(x, cfg, _chunks(t, seed))
    assert all(torch.equal(a.selection.keep_index, b.selection.keep_index) for a, b in zip(steps, again))


@settings(max_examples=40, deadline=None)
@given(t=st.integers(3, 30), n=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_angle_with_its_lookahead_equals_the_offline_curvature(t, n, seed) -> None:
    x = _features(t, n, 5, seed)
    cfg = vcast.VCastConfig(retain_ratio=0.3)
    steps = _run(x, cfg, _chunks(t, seed))
    causal = torch.cat([s.selection.curvature for s in steps])
    offline = vcast.select_tokens(x, cfg).curvature
    torch.testing.assert_close(causal, offline, atol=1e-6, rtol=0)  # the last frame is an endpoint in both


@settings(max_examples=40, deadline=None)
@given(t=st.integers(2, 30), n=st.integers(1, 16), ratio=st.floats(0.05, 1.0),
       curvature=st.sampled_from(["angle", "robust"]), seed=st.integers(0, 2**16), cut=st.integers(1, 29))
def test_a_commit_never_depends_on_frames_after_its_lookahead(t, n, ratio, curvature, seed, cut) -> None:
    x = _features(t, n, 4, seed)
    cfg = vcast.VCastConfig(retain_ratio=ratio, curvature=curvature)
    sizes = _chunks(t, seed)
    steps = _run(x, cfg, sizes)
    # replace everything after the lookahead of the first `j` commits by other frames
    j = min(cut, len(sizes))
    end = sum(sizes[:j]) + LOOKAHEAD_FRAMES[curvature]
    y = x.clone()
    y[end:] = _features(t, n, 4, seed + 1)[end:]
    other = _run(y, cfg, sizes)
    for a, b in zip(steps[:j], other[:j]):
        assert torch.equal(a.selection.keep_index, b.selection.keep_index)
        assert torch.equal(a.selection.frame_budget, b.selection.frame_budget)


def _loop_budget(curvature: list[float], n: int, ratio: float, temperature: float) -> list[int]:
    """Per-frame reference of the budget of one-frame commits in plain Python floats, the share's
    water level found by bisection (the core solves it in closed form)."""
    out, spent, counts, sums = [], 0, [0.0] * WEIGHT_BINS, [0.0] * WEIGHT_BINS
    for t, c in enumerate(curvature):
        e = math.exp(c / temperature)
        k = total_budget(t + 1, n, ratio)
        if t:
            values = [(sums[b] / counts[b], counts[b]) for b in range(WEIGHT_BINS) if counts[b]] + [(e, 1.0)]
            lo, hi = 0.0, float(n)
            for _ in range(200):
                mid = (lo + hi) / 2
                if sum(w * min(n, 1 + mid * v) for v, w in values) < k:
                    lo = mid
                else:
                    hi = mid
            share = min(n, 1 + hi * e)
            debt = (spent - total_budget(t, n, ratio)) / REPAY_HORIZON
            k = round(share) - (math.ceil(debt) if debt > 0 else math.floor(debt))
        k = min(max(k, 1), n)
        b = min(int(c / 2.0 * WEIGHT_BINS), WEIGHT_BINS - 1)
        counts[b] += 1
        sums[b] += e
        out.append(k)
        spent += k
    return out


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ratio", [0.05, 0.2, 0.6, 1.0])
def test_one_frame_commits_match_the_per_frame_reference(seed: int, ratio: float) -> None:
    x = _features(30, 20, 6, seed)
    cfg = vcast.VCastConfig(retain_ratio=ratio)
    steps = _run(x, cfg, [1] * 30)
    curvature = [float(s.selection.curvature) for s in steps]
    got = [s.selection.num_kept for s in steps]
    assert got == _loop_budget(curvature, 20, ratio, cfg.temperature)
    if ratio == 1.0:
        assert got == [20] * 30


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.floats(1.0, 20.0), min_size=1, max_size=12), floor=st.integers(0, 3),
       extra=st.integers(0, 10), fill=st.floats(0.0, 1.0), seed=st.integers(0, 100))
def test_water_level_solves_the_capped_sum(values, floor, extra, fill, seed) -> None:
    cap = floor + extra
    counts = [1.0 + (seed * (i + 1)) % 3 for i in range(len(values))]
    top = sum(c * cap for c in counts)
    total = sum(c * floor for c in counts) + fill * (top - sum(c * floor for c in counts))
    lam = float(water_level(torch.tensor(values, dtype=torch.float64), torch.tensor(counts, dtype=torch.float64),
                            floor, cap, total))
    got = sum(c * min(cap, floor + lam * v) for v, c in zip(values, counts))
    assert got == pytest.approx(total, abs=1e-6 * max(1.0, total))


def test_a_long_stream_keeps_the_configured_ratio() -> None:
    x = _features(600, 16, 8, 5)
    for ratio in (0.1, 0.25, 0.5):
        steps = _run(x, vcast.VCastConfig(retain_ratio=ratio), [1] * 600)
        kept = sum(s.selection.num_kept for s in steps)
        assert abs(kept / (600 * 16) - ratio) < 0.01


def test_turning_frames_get_more_than_straight_ones() -> None:
    # A slow drift with one jump: the frames around the jump take more than the average share.
    t, n, d = 24, 32, 8
    base = torch.randn(d)
    step_dir = torch.randn(d)
    x = torch.stack([base + 0.02 * i * step_dir for i in range(t)])
    x[12:] += 3 * torch.randn(d)
    x = x[:, None, :] + 0.01 * torch.randn(t, n, d)
    steps = _run(x, vcast.VCastConfig(retain_ratio=0.25), [1] * t)
    kept = [s.selection.num_kept for s in steps]
    assert max(kept[11], kept[12]) > max(kept[3:10])


def test_bad_input_and_unsupported_options() -> None:
    cfg = vcast.VCastConfig(retain_ratio=0.5)
    state = causal_step(torch.randn(3, 4, 5), CausalState(), None, cfg).state
    with pytest.raises(InputError, match="N=6"):
        causal_step(torch.randn(2, 6, 5), state, None, cfg)
    with pytest.raises(InputError, match="D=7"):
        causal_step(torch.randn(2, 4, 7), state, None, cfg)
    with pytest.raises(InputError, match="lookahead"):
        causal_step(torch.randn(2, 4, 5), state, torch.randn(2, 5), cfg)
    with pytest.raises(InputError, match="NaN"):
        causal_step(torch.full((2, 4, 5), float("nan")), state, None, cfg)
    with pytest.raises(InputError, match="empty"):
        causal_step(torch.randn(0, 4, 5), state, None, cfg)
    with pytest.raises(ConfigError, match="auto"):
        causal_step(torch.randn(2, 4, 5), state, None, vcast.VCastConfig(retain_ratio="auto"))
    with pytest.raises(ConfigError, match="reproduce"):
        causal_step(torch.randn(2, 4, 5), state, None, vcast.VCastConfig(reproduce="authors"))
    with pytest.raises(ConfigError, match="token_curvature"):
        causal_step(torch.randn(2, 4, 5), state, None, vcast.VCastConfig(token_curvature_weight=1.0))
    assert state.frames == 3  # states are immutable


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_features(dtype) -> None:
    x = _features(10, 12, 8, 3)
    cfg = vcast.VCastConfig(retain_ratio=0.3)
    a = _run(x.to(dtype), cfg, [3, 3, 4])
    b = _run(x.to(dtype).float(), cfg, [3, 3, 4])
    assert all(torch.equal(p.selection.keep_index, q.selection.keep_index) for p, q in zip(a, b))


# ----- eviction -----------------------------------------------------------------------------------

def _dhondt(weights: list[float], caps: list[int], seats: int) -> list[int]:
    """Loop reference: give each seat to the frame with the largest w / (k + 1) (ties: lower frame)."""
    k = [0] * len(weights)
    for _ in range(seats):
        best = max((i for i in range(len(weights)) if k[i] < caps[i]), key=lambda i: (weights[i] / (k[i] + 1), -i))
        k[best] += 1
    return k


@settings(max_examples=60, deadline=None)
@given(caps=st.lists(st.integers(1, 8), min_size=1, max_size=10), seed=st.integers(0, 2**16),
       capacity=st.integers(0, 60))
def test_survivors_are_the_dhondt_apportionment(caps, seed, capacity) -> None:
    g = torch.Generator().manual_seed(seed)
    log_w = torch.rand(len(caps), generator=g, dtype=torch.float64) * 3
    frame = torch.repeat_interleave(torch.arange(len(caps)), torch.tensor(caps))
    rank = torch.cat([torch.arange(c) for c in caps])
    keys = eviction_keys(log_w[frame], rank, frame)
    keep = survivors(keys, torch.zeros_like(keep_all := keys.bool()), capacity)
    assert int(keep.sum()) == min(capacity, len(keep_all))
    counts = torch.bincount(frame[keep], minlength=len(caps)).tolist()
    assert counts == _dhondt(torch.exp(log_w).tolist(), caps, min(capacity, sum(caps)))
    # within a frame the survivors are its best-ranked tokens
    for f in range(len(caps)):
        assert sorted(rank[keep & (frame == f)].tolist()) == list(range(counts[f]))


def test_recency_favours_newer_frames_and_keys_are_time_invariant() -> None:
    frame = torch.arange(10).repeat_interleave(4)
    rank = torch.arange(4).repeat(10)
    log_w = torch.zeros(40, dtype=torch.float64)
    keys = eviction_keys(log_w, rank, frame, half_life=3.0)
    keep = survivors(keys, torch.zeros(40, dtype=torch.bool), 12)
    counts = torch.bincount(frame[keep], minlength=10).tolist()
    assert counts == sorted(counts) and counts[-1] >= 3 and counts[0] == 0
    # shifting every frame index by the same amount shifts every key by the same amount
    shifted = eviction_keys(log_w, rank, frame + 1000, half_life=3.0)
    torch.testing.assert_close(shifted - keys, torch.full_like(keys, 1000 * math.log(2) / 3.0))


def test_skeleton_strides_nest_and_are_protected() -> None:
    assert [skeleton_stride(f, 4) for f in (1, 4, 5, 8, 9, 16, 17)] == [1, 1, 2, 2, 4, 4, 8]
    assert skeleton_stride(100, 0) == 0
    frame = torch.arange(16).repeat_interleave(2)
    rank = torch.tensor([0, 1] * 16)
    protected = skeleton_mask(frame, rank, skeleton_stride(16, 4))
    assert frame[protected].tolist() == [0, 4, 8, 12]
    keys = eviction_keys(torch.zeros(32, dtype=torch.float64), rank, frame, half_life=1.0)
    keep = survivors(keys, protected, 6)
    assert bool(keep[protected].all()) and int(keep.sum()) == 6
    with pytest.raises(ValueError, match="protected"):
        survivors(keys, protected, 3)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 30), capacity=st.integers(0, 60), seed=st.integers(0, 2**16))
def test_survivors_with_costs_are_the_longest_fitting_prefix_of_the_key_order(m, capacity, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    keys = torch.randint(0, 5, (m,), generator=g).double()  # ties: the earlier candidate first
    cost = torch.randint(1, 6, (m,), generator=g)
    protected = torch.rand(m, generator=g) < 0.2
    order = sorted(range(m), key=lambda i: (not bool(protected[i]), -float(keys[i]), i))
    if int(cost[protected].sum()) > capacity:
        with pytest.raises(ValueError, match="protected"):
            survivors(keys, protected, capacity, cost)
        return
    expected, used = set(), 0
    for i in order:  # an independent greedy walk: stop at the first candidate that does not fit
        if used + int(cost[i]) > capacity:
            break
        expected.add(i)
        used += int(cost[i])
    keep = survivors(keys, protected, capacity, cost)
    assert set(torch.nonzero(keep).flatten().tolist()) == expected
    assert int(cost[keep].sum()) <= capacity and bool(keep[protected].all())


@settings(max_examples=40, deadline=None)
@given(t=st.integers(1, 20), n=st.integers(1, 20), ratio=st.floats(0.02, 1.0), chunk=st.integers(1, 25),
       curvature=st.sampled_from(["angle", "robust"]), seed=st.integers(0, 2**16))
def test_causal_select_schedule(t, n, ratio, chunk, curvature, seed) -> None:
    x = _features(t, n, 5, seed)
    cfg = vcast.VCastConfig(retain_ratio=ratio, curvature=curvature)
    sel = causal_select(x, cfg, chunk=chunk)
    assert sel.num_frames == t and sel.num_kept == int(sel.frame_budget.sum())
    assert torch.equal(torch.bincount(sel.keep_index // n, minlength=t), sel.frame_budget)
    if chunk >= t:  # the whole clip arrives at once: offline V-CAST
        assert torch.equal(sel.keep_index, vcast.select_tokens(x, cfg).keep_index)
