"""The model-free coverage benchmark: do a method's kept tokens cover what matters in a clip?

A suite of clips (:mod:`vcast.bench.clips`, several seeds per kind) is turned into token features
(:func:`vcast.bench.features.pixel_token_features`); every method variant selects tokens at each
ratio, and only the *positions* it keeps count (``keep_index``; merging methods are scored by the
grid positions of their merged tokens). Per clip, with ``kept[t]`` the number of kept positions of
frame t and ``mean = mean_t kept[t]``:

- ``needle_hit`` (needle clips): 1 if at least one kept position of the needle frame is a needle
  cell (a token cell at least half covered by the inserted patch), else 0.
- ``needle_recall`` (needle clips): the fraction of needle cells kept.
- ``event_recall`` (slide clips): the fraction of sliding-object cells, over all frames, kept.
- ``cut_share`` (cuts and shake clips): ``mean over cut frames of kept[t] / mean``, cut frames
  being the first frame of each new shot (1.0 = an average frame's share).
- ``shake_share`` (shake clips): the same over the frames displaced by camera shake (not the
  last one before the cut, which belongs to the cut).

Each metric is then averaged over the clips it applies to (so ``needle_hit`` is a rate over seeds),
with its standard error over clips, and ``ratio_used`` is the mean fraction of tokens kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vcast.bench.clips import CLIP_KINDS, Clip, make_clip
from vcast.bench.features import pixel_token_features
from vcast.errors import ConfigError, ReproduceError, VCastError

DEFAULT_RATIOS = (0.5, 0.25, 0.15, 0.1)
METRICS = ("needle_hit", "needle_recall", "event_recall", "cut_share", "shake_share")
TOKEN_CURVATURE_WEIGHT = 1.0  # the spatio-temporal variant's weight (spatial scores span ~[0, 3])


@dataclass(frozen=True)
class Variant:
    """One row family of the table: a registered method with config overrides.

    Attributes:
        name: the label in tables, JSON and plots.
        method: registry name (:func:`vcast.methods.get_method`).
        overrides: config fields set on top of the method's defaults (besides ``retain_ratio``).
        fixed_ratio: True if the variant chooses its own ratio (``retain_ratio="auto"``).
    """

    name: str
    method: str
    overrides: dict[str, Any] = field(default_factory=dict)
    fixed_ratio: bool = False


@dataclass(frozen=True)
class SuiteClip:
    """A benchmark clip with its token features ``[T, h*w, D]`` and event cells ``bool[T, h*w]``."""

    clip: Clip
    features: torch.Tensor
    event_cells: np.ndarray


def extension_variants() -> list[Variant]:
    """V-CAST rows beyond the registered defaults: the spatio-temporal token curvature and the
    adaptive ratio, both on the robust curvature."""
    return [
        Variant("vcast-robust+tok", "vcast-robust", {"token_curvature_weight": TOKEN_CURVATURE_WEIGHT}),
        Variant("vcast-robust-auto", "vcast-robust", {"retain_ratio": "auto"}, fixed_ratio=True),
    ]


def default_variants(names: Iterable[str] | None = None) -> list[Variant]:
    """Every registered method at its defaults followed by :func:`extension_variants`, or just
    the ``names`` given (registered methods or extension variant names), in that order."""
    from vcast.methods import list_methods

    known = {n: Variant(n, n) for n in list_methods()}
    known.update({v.name: v for v in extension_variants()})
    if names is None:
        return list(known.values())
    names = list(names)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; choose from {sorted(known)}")
    return [known[n] for n in names]


def reproduce_variants(mode: str, names: Iterable[str] | None = None) -> list[Variant]:
    """For each method with a ``reproduce=mode`` (or just ``names``, which must have one): its
    default row ``name`` followed by ``name[mode]``, the method as the reproduced code runs it."""
    from vcast.methods import get_method, list_methods

    if mode not in ("authors", "vllm"):
        raise ConfigError(f"--reproduce must be authors or vllm, got {mode!r}")
    offered = [n for n in list_methods() if mode in get_method(n).reproduce_modes]
    chosen = offered if names is None else list(names)
    missing = [n for n in chosen if n not in offered]
    if missing:
        raise ConfigError(f"method(s) {missing} have no reproduce={mode!r} mode; those with one: {offered}")
    out = []
    for name in chosen:
        out += [Variant(name, name), Variant(f"{name}[{mode}]", name, {"reproduce": mode})]
    return out


def is_measured(row: dict[str, Any]) -> bool:
    """True for a row with metrics (not an error, not a mode the published code cannot run)."""
    return "error" not in row and "not_runnable" not in row


def build_suite(
    seeds: int = 8, frames: int = 16, size: tuple[int, int] = (224, 224), grid: tuple[int, int] = (14, 14),
    kinds: Sequence[str] = CLIP_KINDS, first_seed: int = 0,
) -> list[SuiteClip]:
    """``seeds`` clips of each kind (seeds ``first_seed, first_seed + 1, ...``) with their features
    (deterministic)."""
    suite = []
    for kind in kinds:
        for seed in range(first_seed, first_seed + seeds):
            clip = make_clip(kind, frames=frames, size=size, seed=seed)
            suite.append(SuiteClip(clip, pixel_token_features(clip.frames, grid), clip.event_cells(grid)))
    return suite


def clip_metrics(clip: Clip, keep_mask: np.ndarray, event_cells: np.ndarray) -> dict[str, float]:
    """The per-clip metrics (module docstring) from ``keep_mask`` ``bool[T, N]``; NaN where a metric
    does not apply to the clip's kind."""
    kept = keep_mask.sum(1).astype(np.float64)
    mean = kept.mean()
    out = dict.fromkeys(METRICS, math.nan)
    out["ratio_used"] = float(keep_mask.mean())
    if clip.needle_frames:
        cells = event_cells[list(clip.needle_frames)]
        hits = keep_mask[list(clip.needle_frames)] & cells
        out["needle_hit"] = float(hits.any(axis=1).mean())
        out["needle_recall"] = float(hits.sum() / max(cells.sum(), 1))
    elif event_cells.any():
        out["event_recall"] = float((keep_mask & event_cells).sum() / event_cells.sum())
    if clip.cut_frames:
        out["cut_share"] = float(kept[list(clip.cut_frames)].mean() / mean)
    if clip.shake_frames:
        out["shake_share"] = float(kept[list(clip.shake_frames)].mean() / mean)
    return out


def keep_masks(variant: Variant, suite: Sequence[SuiteClip], ratio: float) -> list[np.ndarray]:
    """Run ``variant`` at ``ratio`` on every clip (one batched call); ``bool[T, N]`` per clip."""
    from vcast.methods import get_method, make_config

    spec = get_method(variant.method)
    overrides = dict(variant.overrides)
    overrides.setdefault("retain_ratio", ratio)
    config = make_config(variant.method, **overrides)
    selections = spec.run([s.features for s in suite], config)
    masks = []
    for s, sel in zip(suite, selections):
        t, n = s.features.shape[:2]
        mask = np.zeros(t * n, dtype=bool)
        mask[sel.keep_index.cpu().numpy()] = True
        masks.append(mask.reshape(t, n))
    return masks


def summarise(per_clip: list[dict[str, float]]) -> dict[str, Any]:
    """Mean of each metric over the clips where it applies (NaN if none), its standard error
    (``<metric>_se``, NaN below two clips), the clip count (``<metric>_n``), and the per-clip
    values in suite order (``"per_clip"``, NaN where a metric does not apply) for paired tests."""
    out: dict[str, Any] = {}
    for key in (*METRICS, "ratio_used"):
        vals = np.array([m[key] for m in per_clip if not math.isnan(m[key])])
        out[key] = float(vals.mean()) if vals.size else math.nan
        if key in METRICS:
            out[f"{key}_se"] = float(vals.std(ddof=1) / math.sqrt(vals.size)) if vals.size > 1 else math.nan
            out[f"{key}_n"] = int(vals.size)
    out["per_clip"] = {key: [round(m[key], 4) for m in per_clip] for key in METRICS}
    return out


def run_coverage(
    variants: Sequence[Variant],
    suite: Sequence[SuiteClip],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (variant, ratio): ``{"method", "ratio", <metrics>, "ratio_used", ...}``.

    Variants with ``fixed_ratio`` run once (``"ratio": "auto"``) and also report the ratio used per
    clip kind. A method that raises a vcast error gets a row with ``"error"`` instead of metrics; a
    ``reproduce=`` variant whose published code cannot run at that ratio (a
    :class:`~vcast.errors.ReproduceError`) a row with ``"not_runnable"``, which is not a failure.
    """
    rows = []
    for variant in variants:
        for ratio in ([None] if variant.fixed_ratio else ratios):
            if progress is not None:
                progress(f"{variant.name} @ {ratio if ratio is not None else 'auto'}")
            row: dict[str, Any] = {"method": variant.name, "ratio": "auto" if ratio is None else ratio}
            try:
                masks = keep_masks(variant, suite, 1.0 if ratio is None else ratio)
            except ReproduceError as err:
                rows.append({**row, "not_runnable": str(err)})
                continue
            except VCastError as err:
                rows.append({**row, "error": str(err)})
                continue
            per_clip = [clip_metrics(s.clip, m, s.event_cells) for s, m in zip(suite, masks)]
            row.update(summarise(per_clip))
            if ratio is None:
                row["ratio_by_kind"] = {
                    kind: float(np.mean([m["ratio_used"] for s, m in zip(suite, per_clip) if s.clip.kind == kind]))
                    for kind in dict.fromkeys(s.clip.kind for s in suite)
                }
            rows.append(row)
    return rows


# Targets of the issue for the robust curvature, checked at these ratios.
ROBUST_TARGETS = {"needle_hit": (">=", 0.95), "shake_share": ("<=", 1.0), "cut_share": (">=", 1.5)}
TARGET_RATIOS = (0.25, 0.1)


def check_targets(rows: Sequence[dict[str, Any]], method: str = "vcast-robust",
                  baseline: str = "uniform") -> list[dict[str, Any]]:
    """Each robust-curvature target at :data:`TARGET_RATIOS`: ``{"ratio", "metric", "value", "se",
    "target", "met"}`` (``se``: standard error over clips). Event recall is compared with
    ``baseline``'s (uniform allocation: the same spatial score with equal per-frame budgets), and
    the target text also gives the paired per-clip difference with its standard error."""
    by = {(r["method"], r["ratio"]): r for r in rows if is_measured(r)}
    out = []
    for ratio in TARGET_RATIOS:
        row, base = by.get((method, ratio)), by.get((baseline, ratio))
        if row is None:
            continue
        for metric, (op, bound) in ROBUST_TARGETS.items():
            v = row[metric]
            met = v >= bound if op == ">=" else v <= bound
            out.append({"ratio": ratio, "metric": metric, "value": v, "target": f"{op} {bound}", "met": bool(met)})
        if base is not None:
            diff = np.array(row["per_clip"]["event_recall"]) - np.array(base["per_clip"]["event_recall"])
            diff = diff[~np.isnan(diff)]
            se = float(diff.std(ddof=1) / math.sqrt(diff.size)) if diff.size > 1 else math.nan
            out.append({"ratio": ratio, "metric": "event_recall", "value": row["event_recall"],
                        "target": f"> {baseline} ({base['event_recall']:.3f}); paired difference "
                                  f"{diff.mean():+.3f} +- {se:.3f}",
                        "met": bool(row["event_recall"] > base["event_recall"])})
    for c in out:
        c["se"] = by[(method, c["ratio"])][f"{c['metric']}_se"]
    return out
