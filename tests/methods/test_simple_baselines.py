"""Behaviour of the sanity baselines (random, uniform, pool, evs) and the shared helpers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vcast
from vcast.core.budget import total_budget
from vcast.core.select import dual_anchor_scores
from vcast.errors import ConfigError, InputError
from vcast.methods import make_config
from vcast.methods._common import (
    colocated_cosine,
    equal_budget,
    equal_split,
    evenly_spaced_mask,
    mask_to_index,
    rowwise_dot,
    topk_mask,
)
from vcast.methods.evs import select_evs
from vcast.methods.grid import config_with_grid, resolve_grid, run_with_grids, takes_grid
from vcast.methods.pool import PoolConfig, morton_order, select_pool
from vcast.methods.random_method import RandomConfig, select_random
from vcast.methods.uniform import select_uniform


def test_equal_budget_is_allocate_frames_on_equal_weights() -> None:
    for t in (1, 2, 3, 7, 64):
        for n in (1, 5, 196):
            for k in sorted({t, t + 1, (t * n) // 3, t * n - 1, t * n}):
                if t <= k <= t * n:
                    got = equal_budget(torch.zeros(t, n, 1), k)
                    assert got.tolist() == equal_split(k, t)


def test_small_helpers() -> None:
    scores = torch.tensor([[3.0, 1.0, 3.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    assert topk_mask(scores, torch.tensor([2, 3])).tolist() == [[True, False, True, False], [True, True, True, False]]
    assert topk_mask(scores, torch.tensor([1, 0]), largest=False).tolist()[0] == [False, True, False, False]
    spread = evenly_spaced_mask(torch.tensor([0, 2, 5, 10]), 10)
    assert spread.sum(1).tolist() == [0, 2, 5, 10] and spread[2].tolist() == [False, True] * 5
    mask = torch.tensor([[False, True], [True, True]])
    assert mask_to_index(mask, 3).tolist() == [1, 2, 3]
    a, b = torch.randn(300, 7), torch.randn(300, 7)
    for chunked in (True, False):  # both device paths
        torch.testing.assert_close(rowwise_dot(a, b, chunked=chunked), (a * b).sum(-1))
    x = torch.randn(5, 6, 7)
    x[2, 3] = 0.0
    norms = torch.linalg.vector_norm(x, dim=-1)
    for lag in (1, 2):
        torch.testing.assert_close(colocated_cosine(x, norms, lag), F.cosine_similarity(x[lag:], x[:-lag], dim=-1, eps=1e-6))


# random ------------------------------------------------------------------------------------------

def test_random_reproducible_by_seed_and_differs_across_seeds() -> None:
    x = torch.randn(8, 49, 4)
    a = select_random(x, RandomConfig(retain_ratio=0.2, seed=1))
    b = select_random(x * 5 + 1, RandomConfig(retain_ratio=0.2, seed=1))  # content-free
    c = select_random(x, RandomConfig(retain_ratio=0.2, seed=2))
    assert torch.equal(a.keep_index, b.keep_index)
    assert not torch.equal(a.keep_index, c.keep_index)


def test_random_scopes() -> None:
    x = torch.randn(7, 30, 4)
    frame = select_random(x, RandomConfig(retain_ratio=0.3, scope="frame"))
    assert frame.frame_budget.tolist() == equal_split(total_budget(7, 30, 0.3), 7)
    video = [select_random(x, RandomConfig(retain_ratio=0.3, seed=s)).frame_budget for s in range(5)]
    assert any(len(set(b.tolist())) > 2 for b in video)  # per-frame counts vary with scope="video"
    with pytest.raises(ConfigError, match="scope"):
        RandomConfig(scope="token")


def test_random_covers_positions_uniformly() -> None:
    x = torch.randn(4, 25, 2)
    hits = torch.zeros(100)
    for seed in range(400):
        hits[select_random(x, RandomConfig(retain_ratio=0.25, seed=seed)).keep_index] += 1
    assert float(hits.min()) > 60 and float(hits.max()) < 140  # mean 100


# uniform -----------------------------------------------------------------------------------------

def test_uniform_is_equal_budget_dual_anchor_topk() -> None:
    x = torch.randn(9, 40, 16) * torch.linspace(0.5, 3.0, 9).view(9, 1, 1)
    sel = select_uniform(x, make_config("uniform", retain_ratio=0.23))
    k = total_budget(9, 40, 0.23)
    assert sel.frame_budget.tolist() == equal_split(k, 9)
    r = F.normalize(x.mean(1), dim=-1)
    scores = dual_anchor_scores(x, r)
    for t in range(9):  # loop reference: per frame, the top-k_t by the dual-anchor score
        kt = int(sel.frame_budget[t])
        ref = torch.sort(torch.sort(scores[t], descending=True, stable=True).indices[:kt]).values + t * 40
        assert torch.equal(sel.keep_index[sel.keep_index // 40 == t], ref)


# pool --------------------------------------------------------------------------------------------

def test_pool_averages_2x2_blocks_at_quarter_ratio() -> None:
    t, h, w, d = 3, 6, 8, 5
    x = torch.randn(t, h * w, d)
    sel = select_pool(x, PoolConfig(retain_ratio=0.25, grid_hw=(h, w)))
    ref = F.avg_pool2d(x.view(t, h, w, d).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)  # [T, h/2, w/2, D]
    top_left = (torch.arange(h // 2).view(-1, 1) * 2 * w + torch.arange(w // 2) * 2).reshape(-1)
    expected_keep = (torch.arange(t).view(-1, 1) * h * w + top_left).reshape(-1)
    assert torch.equal(sel.keep_index, expected_keep)
    torch.testing.assert_close(sel.merged_features, ref.reshape(-1, d))


def test_pool_4x4_at_sixteenth_and_exact_k_elsewhere() -> None:
    x = torch.randn(2, 64, 3)
    sel = select_pool(x, PoolConfig(retain_ratio=1 / 16))
    ref = F.avg_pool2d(x.view(2, 8, 8, 3).permute(0, 3, 1, 2), 4).permute(0, 2, 3, 1).reshape(-1, 3)
    torch.testing.assert_close(sel.merged_features, ref)


def _loop_pool(x: torch.Tensor, h: int, w: int, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop reference: Z-order runs of floor(p * k / N), mean per run, placed at its smallest index."""
    t, n, _ = x.shape
    code = [sum((((yy >> b) & 1) << (2 * b + 1)) | (((xx >> b) & 1) << (2 * b)) for b in range(8))
            for yy in range(h) for xx in range(w)]
    z = sorted(range(n), key=lambda i: code[i])
    runs = []
    for f, kt in enumerate(equal_split(total_budget(t, n, ratio), t)):
        members: dict[int, list[int]] = {}
        for p, cell in enumerate(z):
            members.setdefault(p * kt // n, []).append(cell)
        runs += [(f * n + min(m), x[f, m].mean(0)) for m in members.values()]
    runs.sort(key=lambda r: r[0])
    return torch.tensor([r[0] for r in runs]), torch.stack([r[1] for r in runs])


@pytest.mark.parametrize("ratio", [0.05, 0.3, 0.61, 0.99])
@pytest.mark.parametrize("grid", [(5, 7), (4, 4), (1, 9)])
def test_pool_matches_loop_reference(ratio: float, grid: tuple[int, int]) -> None:
    x = torch.randn(3, grid[0] * grid[1], 4, dtype=torch.float64)
    sel = select_pool(x, PoolConfig(retain_ratio=ratio, grid_hw=grid))
    keep, merged = _loop_pool(x, *grid, ratio)
    assert torch.equal(sel.keep_index, keep)
    torch.testing.assert_close(sel.merged_features, merged)


def test_morton_order_groups_quads() -> None:
    order = morton_order(4, 6, torch.device("cpu"))
    assert sorted(order.tolist()) == list(range(24))
    for q in range(6):
        cells = sorted(order[4 * q : 4 * q + 4].tolist())
        y, xx = cells[0] // 6, cells[0] % 6
        assert cells == [y * 6 + xx, y * 6 + xx + 1, (y + 1) * 6 + xx, (y + 1) * 6 + xx + 1]


def test_pool_grid_handling() -> None:
    x = torch.randn(2, 12, 3)
    with pytest.raises(InputError, match="grid_hw"):
        select_pool(x, PoolConfig())
    with pytest.raises(InputError, match="cells"):
        select_pool(x, PoolConfig(grid_hw=(3, 5)))
    with pytest.raises(ConfigError):
        PoolConfig(grid_hw=(0, 4))
    cfg = PoolConfig(grid_hw=[3, 4])  # JSON lists become tuples
    assert cfg.grid_hw == (3, 4) and PoolConfig.from_dict(cfg.to_dict()) == cfg
    assert resolve_grid(None, 49) == (7, 7)
    assert takes_grid(cfg) and not takes_grid(vcast.VCastConfig())
    assert config_with_grid(vcast.VCastConfig(), (3, 4)) == vcast.VCastConfig()
    videos = [torch.randn(2, 12, 3), torch.randn(3, 16, 3), torch.randn(1, 12, 3)]
    sels = run_with_grids("pool", videos, make_config("pool", retain_ratio=0.5), [(3, 4), (4, 4), (4, 3)])
    assert [s.num_kept for s in sels] == [12, 24, 6]
    with pytest.raises(InputError, match="grids"):
        run_with_grids("pool", videos, make_config("pool"), [(3, 4)])


# evs ---------------------------------------------------------------------------------------------

def _vllm_style_evs_mask(x: torch.Tensor, keep: int) -> torch.Tensor:
    """Independent re-statement of vLLM's compute_retention_mask with a given count."""
    sim = F.cosine_similarity(x[1:], x[:-1], dim=-1)
    dis = torch.cat([255 * torch.ones_like(x[:1, :, 0]), 1 - sim], dim=0).reshape(-1)
    order = torch.argsort(dis, descending=True, stable=True)
    mask = torch.zeros_like(dis, dtype=torch.bool)
    mask[order[:keep]] = True
    return mask


def test_evs_keeps_first_frame_whole_and_drops_static_positions() -> None:
    t, n, d = 6, 20, 8
    x = torch.randn(1, n, d).repeat(t, 1, 1)
    moving = torch.tensor([2, 5, 11, 17])
    x[1:, moving] = torch.randn(t - 1, len(moving), d)
    sel = select_evs(x, make_config("evs", retain_ratio=(n + 4 * (t - 1)) / (t * n)))
    mask = sel.keep_mask()
    assert bool(mask[0].all())
    assert torch.equal(mask[1:], torch.zeros(t - 1, n, dtype=torch.bool).index_fill_(1, moving, True))
    assert sel.curvature[0] == 0 and bool((sel.curvature[1:] > 0).all())


@pytest.mark.parametrize("ratio", [0.2, 0.35, 0.8])
def test_evs_matches_vllm_mask_for_the_same_count(ratio: float) -> None:
    x = torch.randn(10, 36, 12).cumsum(0)
    sel = select_evs(x, make_config("evs", retain_ratio=ratio))
    ref = _vllm_style_evs_mask(x, total_budget(10, 36, ratio))
    assert torch.equal(sel.keep_mask().reshape(-1), ref)


def test_evs_below_one_frame_keeps_spread_first_frame_tokens() -> None:
    x = torch.randn(3, 20, 4)
    sel = select_evs(x, make_config("evs", retain_ratio=0.1))  # K = 6 < N = 20
    assert sel.frame_budget.tolist() == [6, 0, 0]
    assert sel.keep_index.tolist() == [3, 6, 9, 13, 16, 19]
