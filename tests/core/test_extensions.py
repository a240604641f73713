"""The three extensions beyond the paper: shake-robust curvature, adaptive ratio, and the
spatio-temporal token curvature. Hand-made trajectories with known answers, hypothesis properties,
and (for the token curvature) the coverage benchmark's sliding-object clips."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vcast
from vcast.core import curvature as cv
from vcast.core.layout import BatchLayout


def _layout(*videos: torch.Tensor) -> BatchLayout:
    return BatchLayout.build([v.unsqueeze(1) if v.dim() == 2 else v for v in videos], torch.device("cpu"))


def _line(t: int, step: float = 1.0) -> torch.Tensor:
    """A steady pan: frames on a straight line, ``[t, 3]``."""
    r = torch.zeros(t, 3)
    r[:, 0] = torch.arange(t) * step
    return r


# --- interpolation residual -------------------------------------------------------------------

def test_residual_of_a_pan_is_zero_and_an_insert_explains_its_neighbours_away() -> None:
    r = _line(8)
    r[3, 1] = 1.0  # a one-frame insert
    e = cv.interpolation_residual(r, _layout(r))
    torch.testing.assert_close(e, torch.tensor([0, 0, 0, 1.0, 0, 0, 0, 0]))


def test_residual_of_a_cut_marks_both_sides() -> None:
    r = torch.zeros(8, 2)
    r[4:, 0] = 1.0  # cut between frames 3 and 4
    e = cv.interpolation_residual(r, _layout(r))
    torch.testing.assert_close(e, torch.tensor([0, 0, 0, 0.5, 0.5, 0, 0, 0]))
    r = torch.zeros(6, 2)
    r[1:, 0] = 1.0  # a cut right after the first frame: the endpoint scores like its partner
    torch.testing.assert_close(cv.interpolation_residual(r, _layout(r)), torch.tensor([0.5, 0.5, 0, 0, 0, 0]))


def test_residual_short_videos() -> None:
    one, two = torch.randn(1, 3), torch.randn(2, 3)
    assert cv.interpolation_residual(one, _layout(one)).tolist() == [0.0]
    half = 0.5 * float((two[0] - two[1]).norm())
    torch.testing.assert_close(cv.interpolation_residual(two, _layout(two)), torch.tensor([half, half]))


@settings(max_examples=30, deadline=None)
@given(frames=st.lists(st.integers(1, 9), min_size=1, max_size=5), n=st.integers(1, 4), seed=st.integers(0, 999))
def test_contiguous_residual_equals_the_gather_version(frames, n, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    videos = [torch.randn(t, n, 5, generator=g) for t in frames]
    prev, nxt = _layout(*videos).neighbours()
    x = torch.cat(videos)
    torch.testing.assert_close(cv.contiguous_chord_residual(x, prev, nxt), cv.chord_residual(x, prev, nxt),
                               atol=1e-5, rtol=1e-5)


def test_local_level_is_a_shifted_window_median() -> None:
    e = torch.tensor([5.0, 1, 2, 3, 4, 100, 6])
    lay = _layout(torch.zeros(7, 1))
    level = cv.local_level(e, lay, half_window=1)  # windows of 3, shifted inward at the ends
    torch.testing.assert_close(level, torch.tensor([2.0, 2, 2, 3, 4, 6, 6]))
    whole = cv.local_level(e, lay, half_window=8)  # longer than the video: the whole video
    assert whole.tolist() == [4.0] * 7


# --- robust curvature -------------------------------------------------------------------------

def _shake_then_cut(seed: int = 0) -> torch.Tensor:
    """Frame means: 3 steady frames, 8 shaken (small random steps), a cut, 5 steady. ``[16, 8]``."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.zeros(8), torch.zeros(8)
    a[0], b[1] = 1.0, 1.0
    r = torch.stack([a] * 11 + [b] * 5) + 1e-4 * torch.randn(16, 8, generator=g)
    r[3:11] += 0.03 * torch.randn(8, 8, generator=g)
    return torch.nn.functional.normalize(r, dim=-1)


@pytest.mark.parametrize("seed", range(5))
def test_shake_gets_no_more_than_average_and_the_cut_keeps_its_budget(seed: int) -> None:
    r = _shake_then_cut(seed)
    x = r.unsqueeze(1).expand(16, 20, 8).contiguous()
    robust = vcast.select_tokens(x, retain_ratio=0.25, curvature="robust")
    mean = robust.frame_budget.float().mean()
    assert robust.frame_budget[3:10].float().mean() <= mean  # shaken frames (not the one before the cut)
    assert robust.frame_budget[11] >= 1.5 * mean  # the first frame after the cut
    angle = vcast.select_tokens(x, retain_ratio=0.25)  # the published estimator favours the shake
    assert angle.frame_budget[3:10].float().mean() > angle.frame_budget.float().mean()


def test_an_insert_gets_the_largest_curvature_and_more_than_its_neighbours() -> None:
    r = torch.nn.functional.normalize(_line(12, 0.01) + torch.tensor([1.0, 0, 0]), dim=-1)
    r[6] = torch.nn.functional.normalize(r[6] + torch.tensor([0, 0.2, 0]), dim=0)
    c = cv.robust_curvature(r, _layout(r))
    assert int(c.argmax()) == 6 and float(c[6]) == pytest.approx(cv.CURVATURE_RANGE)
    assert float(c[5]) < 0.5 and float(c[7]) < 0.5


def test_static_video_has_no_events() -> None:
    g = torch.Generator().manual_seed(0)
    r = torch.nn.functional.normalize(torch.ones(10, 4) + 1e-4 * torch.randn(10, 4, generator=g), dim=-1)
    c = cv.robust_curvature(r, _layout(r))
    assert float(c.max()) < 0.2  # noise below the floor: equal budgets


@settings(max_examples=40, deadline=None)
@given(frames=st.lists(st.integers(1, 20), min_size=1, max_size=5), d=st.integers(1, 6),
       scale=st.sampled_from([1e-4, 1e-2, 1.0]), seed=st.integers(0, 2**16))
def test_robust_curvature_properties(frames, d, scale, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    videos = [torch.nn.functional.normalize(torch.randn(t, d, generator=g) * scale + 1.0, dim=-1) for t in frames]
    c = cv.robust_curvature(torch.cat(videos), _layout(*videos))
    assert bool(torch.isfinite(c).all())
    assert float(c.min()) >= 0.0 and float(c.max()) <= cv.CURVATURE_RANGE + 1e-5
    # Each video's values depend on that video only: reversing the batch order reverses the blocks.
    rev = cv.robust_curvature(torch.cat(videos[::-1]), _layout(*videos[::-1]))
    ours = torch.split(c, frames)
    theirs = torch.split(rev, frames[::-1])[::-1]
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # Time reversal is a symmetry of interpolation.
    back = cv.robust_curvature(videos[0].flip(0), _layout(videos[0]))
    torch.testing.assert_close(back.flip(0), torch.split(c, frames)[0], atol=1e-5, rtol=0)


# --- adaptive ratio ---------------------------------------------------------------------------

def _video(kind: str, t: int = 12, n: int = 30, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(1, n, 16, generator=g)
    if kind == "static":
        return base + 1e-3 * torch.randn(t, n, 16, generator=g)
    return torch.randn(t, n, 16, generator=g)  # every frame new content


def test_auto_ratio_static_keeps_fewer_than_busy_and_reports_what_it_used() -> None:
    cfg = vcast.VCastConfig(retain_ratio="auto", min_ratio=0.1, max_ratio=0.5, curvature="robust")
    static, busy = vcast.select_tokens([_video("static"), _video("busy")], cfg)
    assert static.num_kept < busy.num_kept
    for sel in (static, busy):
        assert sel.retain_ratio == sel.num_kept / (12 * 30) == int(sel.frame_budget.sum()) / (12 * 30)
        assert 0.1 - 1 / 360 <= sel.retain_ratio <= 0.5 + 1 / 360
        assert sel.summary()["ratio_used"] == round(sel.retain_ratio, 6)
    assert static.retain_ratio == pytest.approx(0.1, abs=0.01) and busy.retain_ratio > 0.45
    # Batched and alone agree.
    assert torch.equal(vcast.select_tokens(_video("busy"), cfg).keep_index, busy.keep_index)
    fixed = vcast.select_tokens(_video("busy"), cfg.replace(min_ratio=0.3, max_ratio=0.3))
    assert fixed.num_kept == round(12 * 30 * 0.3)


def test_motion_ignores_content_that_comes_back() -> None:
    # A shake oscillating between two views is not new content; a pan with the same step is.
    pan = _line(10, 0.1)
    shake = torch.zeros(10, 3)
    shake[1::2, 0] = 0.1
    motion = cv.trajectory_motion(torch.cat([pan, shake]), _layout(pan, shake))
    assert float(motion[0]) == pytest.approx(0.1)
    assert float(motion[1]) == pytest.approx(0.1 / 9)  # only frame 1 is new
    assert cv.trajectory_motion(torch.randn(1, 3), _layout(torch.randn(1, 3))).tolist() == [0.0]


# --- spatio-temporal token curvature ----------------------------------------------------------

def test_token_curvature_prefers_the_region_that_changes() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 40, 8, generator=g).repeat(10, 1, 1) + 1e-3 * torch.randn(10, 40, 8, generator=g)
    x[5, 7] += 3.0  # token 7 changes in frame 5 only
    prev, nxt = _layout(x).neighbours()
    tc = cv.token_curvature(x, prev, nxt)
    assert tc.shape == (10, 40) and float(tc.min()) >= 0 and float(tc.max()) <= 1
    assert float(tc[5, 7]) == 1.0 and float(tc[5].sort().values[-2]) < 0.5
    # A change of the whole frame (a cut, a global shift) is nobody's in particular.
    y = x.clone()
    y[5:] += 2.0
    assert float(cv.token_curvature(y, prev, nxt)[4:6].mean()) < 0.2
    # With the option on, that token survives a budget of one token per frame.
    sel = vcast.select_tokens(x, retain_ratio=0.025, token_curvature_weight=1.0, temperature=1e9)
    assert bool(sel.keep_mask()[5, 7])


def test_token_curvature_raises_event_recall_on_sliding_object_clips() -> None:
    from vcast.bench.coverage import Variant, build_suite, run_coverage

    suite = build_suite(seeds=4, kinds=("slide",))
    rows = run_coverage([Variant("off", "vcast-robust"),
                         Variant("on", "vcast-robust", {"token_curvature_weight": 1.0})], suite, ratios=(0.25, 0.1))
    by = {(r["method"], r["ratio"]): r["event_recall"] for r in rows}
    for ratio in (0.25, 0.1):
        assert by["on", ratio] > by["off", ratio] + 0.1
    assert not math.isnan(by["on", 0.1])
