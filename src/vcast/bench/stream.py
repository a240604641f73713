"""``vcast bench stream``: the causal rule against offline V-CAST and uniform, and what streaming saves.

Four measurements, each reported as ratios or matched comparisons from one run:

- **coverage** (model-free, the clips of :mod:`vcast.bench.coverage`): per clip, the causal rule fed
  as a stream (:func:`vcast.core.causal.causal_select`, chunks of ``chunk`` frames, the question at the
  end) keeps ``K`` tokens; offline V-CAST (same curvature estimator) and uniform then run on the same
  clip at exactly ``K`` tokens (``retain_ratio = K / (T*N)``), so the three rows compare at equal
  token counts clip by clip.
- **accuracy** (the proxy Video LLM, :mod:`vcast.proxy`): each test clip is streamed through
  :func:`vcast.stream` one temporal patch at a time and its question asked after the last frame
  (one greedy token); offline V-CAST and uniform answer through ``vcast.enabled`` at each clip's
  stream token count. The unpruned model is the reference.
- **latency**: per-chunk time of ``add_frames`` (one temporal patch) against re-running the whole
  offline pipeline on every frame seen so far (processor, vision tower, V-CAST, LLM prefill: the naive
  way to answer on a stream) and against its LLM part alone (pruned prefill from pre-computed vision
  features), timed alternately at each checkpoint, medians of the repeats.
- **memory**: a long synthetic stream under ``max_video_tokens``; the video tokens and cache length
  after every chunk and the process's resident memory (``VmRSS``) every ``every`` frames.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

import vcast
from vcast.bench.coverage import SuiteClip, clip_metrics, summarise
from vcast.core.causal import causal_select

ESTIMATORS = {"vcast": "angle", "vcast-robust": "robust"}
Progress = Callable[[str], None] | None


def _mask(sel, t: int, n: int) -> np.ndarray:
    mask = np.zeros(t * n, dtype=bool)
    mask[sel.keep_index.cpu().numpy()] = True
    return mask.reshape(t, n)


def matched_masks(features: torch.Tensor, ratio: float, curvature: str, chunk: int) -> dict[str, np.ndarray]:
    """Keep masks ``bool[T, N]`` of the causal rule and of offline V-CAST and uniform at its count."""
    t, n, _ = features.shape
    cfg = vcast.VCastConfig(retain_ratio=ratio, curvature=curvature)
    stream = causal_select(features, cfg, chunk=chunk)
    matched = stream.num_kept / (t * n)
    offline = vcast.select_tokens(features, cfg.replace(retain_ratio=matched))
    uniform = vcast.get_method("uniform").select(features, vcast.make_config("uniform", retain_ratio=matched))
    if not offline.num_kept == uniform.num_kept == stream.num_kept:
        raise AssertionError("matched token counts differ")  # cannot happen: total_budget(T, N, K/TN) == K
    return {"stream": _mask(stream, t, n), "offline": _mask(offline, t, n), "uniform": _mask(uniform, t, n)}


def coverage_rows(suite: Sequence[SuiteClip], ratios: Sequence[float], chunk: int = 1,
                  progress: Progress = None) -> list[dict[str, Any]]:
    """One row per (estimator, ratio, rule): the coverage metrics of :mod:`vcast.bench.coverage`."""
    rows = []
    for name, curvature in ESTIMATORS.items():
        for ratio in ratios:
            if progress is not None:
                progress(f"coverage {name} @ {ratio}")
            per_rule: dict[str, list] = {"stream": [], "offline": [], "uniform": []}
            for s in suite:
                for rule, mask in matched_masks(s.features, ratio, curvature, chunk).items():
                    per_rule[rule].append(clip_metrics(s.clip, mask, s.event_cells))
            for rule, per_clip in per_rule.items():
                rows.append({"estimator": name, "rule": rule, "ratio": ratio, **summarise(per_clip)})
    return rows


def _stream_answer(model, processor, clip, ratio: float, template: str) -> tuple[int, int, int]:
    """``(answer token, tokens kept, tokens seen)`` of one proxy clip streamed a temporal patch at a time."""
    from vcast.proxy import tasks

    s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=ratio), template=template)
    step = s.family.temporal_patch
    for i in range(0, len(clip.frames), step):
        s.add_frames(clip.frames[i:i + step], timestamps=[j / tasks.FPS for j in range(i, i + step)])
    answer = s.ask(clip.question, max_new_tokens=1)
    return answer.tokens[0], s.stats["tokens_kept"], s.stats["tokens_seen"]


def accuracy_rows(model, processor, clips: Sequence, ratios: Sequence[float],
                  progress: Progress = None) -> dict[str, Any]:
    """Proxy accuracy: unpruned, and per ratio the stream, offline V-CAST and uniform at matched counts."""
    from vcast.proxy.evaluate import accuracy, predict
    from vcast.proxy.model import PROMPT, TOKEN_ID

    words = {i: w for w, i in TOKEN_ID.items()}
    unpruned = accuracy(clips, predict(model, processor, clips))
    rows = []
    for ratio in ratios:
        answers: dict[str, list[str]] = {"stream": [], "offline": [], "uniform": []}
        kept = seen = 0
        for clip in clips:
            if progress is not None:
                progress(f"accuracy @ {ratio}")
            token, k, n = _stream_answer(model, processor, clip, ratio, PROMPT)
            answers["stream"].append(words.get(token, "<unk>"))
            kept, seen = kept + k, seen + n
            for rule, method in (("offline", "vcast"), ("uniform", "uniform")):
                with vcast.enabled(model, method=method, retain_ratio=k / n):
                    answers[rule].extend(predict(model, processor, [clip], batch_size=1))
        for rule, got in answers.items():
            acc = accuracy(clips, got)
            rows.append({"rule": rule, "ratio": ratio, "kept_ratio": round(kept / seen, 6), "overall": acc["overall"],
                         "retention": round(acc["overall"] / unpruned["overall"], 6) if unpruned["overall"] else None,
                         "families": acc["families"]})
    return {"unpruned": unpruned, "rows": rows, "clips": len(clips)}


def _clip_inputs(processor, frames: np.ndarray, question: str):
    """The proxy processor's inputs for ``frames`` and ``question`` (its prompt, frames at ``tasks.FPS``)."""
    from vcast.proxy import tasks
    from vcast.proxy.model import encode

    return encode(processor, [tasks.Clip(frames, "needle", question, "circle", ())])


def latency_rows(model, processor, checkpoints: Sequence[int] = (64, 256, 1024), ratio: float = 0.25,
                 repeats: int = 5, size: int = 128, progress: Progress = None) -> list[dict[str, Any]]:
    """Per checkpoint F (raw frames seen): median seconds of one ``add_frames`` chunk, of the full
    offline pipeline on F frames and of its pruned LLM prefill, and the ratios (offline / stream).
    ``model`` / ``processor``: the proxy's (:func:`vcast.proxy.model.load_model`)."""
    from vcast.proxy import tasks
    from vcast.proxy.model import PROMPT

    cfg = vcast.VCastConfig(retain_ratio=ratio)
    s = vcast.stream(model, processor, cfg, template=PROMPT)
    step = s.family.temporal_patch
    frames = vcast.testing.random_video(max(checkpoints) + step * (repeats + 1), size, size, seed=0, motion=2.0)
    question = "which shape appeared ?"
    fed, rows = 0, []

    def feed(upto: int) -> None:
        nonlocal fed
        while fed < upto:
            s.add_frames(frames[fed:fed + step], timestamps=[j / tasks.FPS for j in range(fed, fed + step)])
            fed += step

    for f in sorted(checkpoints):
        if progress is not None:
            progress(f"latency @ {f} frames")
        feed(f)
        inputs = _clip_inputs(processor, frames[:f], question)
        video = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"],
                                               return_dict=True)
        text = {k: v for k, v in inputs.items() if k != "pixel_values_videos"}
        stream_t, full_t, prefill_t = [], [], []
        for _ in range(repeats):  # alternate, so that load changes hit all three alike
            start = time.perf_counter()
            feed(fed + step)
            stream_t.append(time.perf_counter() - start)
            with vcast.enabled(model, cfg):
                start = time.perf_counter()
                model(**_clip_inputs(processor, frames[:f], question), logits_to_keep=1)
                full_t.append(time.perf_counter() - start)
                outputs = type(video)(pooler_output=video.pooler_output,
                                      deepstack_features=list(video.deepstack_features))
                start = time.perf_counter()
                model(**text, mm_encoder_outputs={"video": outputs}, logits_to_keep=1)
                prefill_t.append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in (("stream", stream_t), ("full", full_t), ("prefill", prefill_t))}
        rows.append({"frames": f, "add_frames_s": med["stream"], "offline_full_s": med["full"],
                     "offline_prefill_s": med["prefill"], "full_over_stream": med["full"] / med["stream"],
                     "prefill_over_stream": med["prefill"] / med["stream"], "repeats": repeats,
                     "video_tokens": s.stats["video_tokens"]})
    return rows


def resident_mb() -> float:
    """This process's resident memory in MiB (``VmRSS`` of ``/proc/self/status``; NaN elsewhere)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return math.nan


def memory_run(model, processor, frames: int = 2000, size: int = 64, cap: int = 256, ratio: float = 0.25,
               every: int = 100, progress: Progress = None) -> dict[str, Any]:
    """A ``frames``-frame stream under ``max_video_tokens=cap``: samples every ``every`` frames."""
    from vcast.proxy import tasks
    from vcast.proxy.model import PROMPT

    s = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=ratio), max_video_tokens=cap, template=PROMPT)
    step = s.family.temporal_patch
    clip = vcast.testing.random_video(frames, size, size, seed=1, motion=1.5)
    samples, max_video, max_cache = [], 0, 0
    for i in range(0, frames, step):
        report = s.add_frames(clip[i:i + step], timestamps=[j / tasks.FPS for j in range(i, i + step)])
        max_video, max_cache = max(max_video, report["video_tokens"]), max(max_cache, report["cache_length"])
        if (i + step) % every == 0:
            if progress is not None:
                progress(f"memory {i + step}/{frames} frames")
            gc.collect()
            samples.append({"frames": i + step, "rss_mb": round(resident_mb(), 2),
                            "video_tokens": report["video_tokens"], "cache_length": report["cache_length"]})
    s.ask("which shape appeared ?", max_new_tokens=1)
    warm = [x for x in samples if x["frames"] >= frames // 4]
    return {"frames": frames, "size": size, "cap": cap, "ratio": ratio, "samples": samples,
            "max_video_tokens_seen": max_video, "max_cache_length": max_cache, "evicted": s.stats["evicted"],
            "rss_growth_after_warmup_mb": round(warm[-1]["rss_mb"] - warm[0]["rss_mb"], 2) if len(warm) > 1 else None,
            "warmup_frames": frames // 4}


def plot(result: dict[str, Any], path) -> None:
    """Coverage and accuracy at matched counts, the latency ratios and the memory trace in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    styles = {"stream": {"color": "tab:red", "lw": 2.2}, "offline": {"color": "black", "lw": 2.2},
              "uniform": {"color": "tab:blue", "lw": 1.4, "ls": "--"}}
    cov = result.get("coverage") or []
    for ax, metric in zip(axes[0], ("needle_hit", "event_recall", "cut_share")):
        for est, marker in (("vcast", "o"), ("vcast-robust", "s")):
            for rule, style in styles.items():
                pts = sorted((r["ratio_used"], r[metric]) for r in cov if r["estimator"] == est and r["rule"] == rule)
                if pts:
                    ax.plot(*zip(*pts), marker=marker, ms=4, label=f"{rule} ({est})", alpha=1 if est == "vcast" else 0.6,
                            **style)
        ax.set_xscale("log")
        ax.set_title(f"coverage: {metric} (matched counts)")
        ax.set_xlabel("tokens kept (ratio)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    acc = result.get("accuracy")
    ax = axes[1][0]
    if acc:
        for rule, style in styles.items():
            pts = sorted((r["kept_ratio"], r["overall"]) for r in acc["rows"] if r["rule"] == rule)
            ax.plot(*zip(*pts), marker="o", label=rule, **style)
        ax.axhline(acc["unpruned"]["overall"], color="grey", ls=":", label="unpruned")
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_title("proxy accuracy, question after the clip")
    ax.set_xlabel("tokens kept (ratio)")
    ax.grid(alpha=0.3)
    ax = axes[1][1]
    lat = result.get("latency") or []
    if lat:
        fr = [r["frames"] for r in lat]
        ax.plot(fr, [r["full_over_stream"] for r in lat], marker="o", color="black", label="full offline / add_frames")
        ax.plot(fr, [r["prefill_over_stream"] for r in lat], marker="s", color="tab:red",
                label="offline LLM prefill / add_frames")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_title("per-chunk latency ratio (one temporal patch)")
    ax.set_xlabel("frames seen")
    ax.grid(alpha=0.3)
    ax = axes[1][2]
    mem = result.get("memory")
    if mem:
        xs = [x["frames"] for x in mem["samples"]]
        rss = [x["rss_mb"] for x in mem["samples"]]
        ax.plot(xs, rss, color="black", label="resident MiB")
        ax.set_ylim(min(rss) - 50, max(rss) + 50)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_ylabel("resident memory (MiB, black)")
        twin = ax.twinx()
        twin.plot(xs, [x["video_tokens"] for x in mem["samples"]], color="tab:red", label="video tokens in cache")
        twin.plot(xs, [x["cache_length"] for x in mem["samples"]], color="tab:orange", ls="--", label="cache length")
        twin.axhline(mem["cap"], color="tab:red", ls=":")
        twin.set_ylabel("tokens")
        twin.legend(fontsize=8, loc="center right")
    ax.set_title("a long stream under max_video_tokens")
    ax.set_xlabel("frames")
    ax.grid(alpha=0.3)
    fig.suptitle("vcast bench stream: causal V-CAST on a live stream")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
