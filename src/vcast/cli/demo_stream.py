"""``vcast demo --stream``: the demo clip played into :func:`vcast.stream` frame by frame."""

from __future__ import annotations

from pathlib import Path

import typer

ASK_AT = 8  # the mid-stream question comes after this many frames


def plot_stream(rows: list[dict], patches: list[tuple[float, int]], pixel_budget: list[int], cuts: list[float],
                path: Path, title: str) -> Path:
    """Video tokens in the cache and each committed frame's budget against the clip's time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    times = [r["time"] for r in rows]
    top.step(times, [r["video_tokens"] for r in rows], where="post", color="tab:red", lw=2)
    top.set_ylabel("video tokens in the cache")
    top.set_title(title, fontsize=10)
    bottom.bar([p[0] for p in patches], [p[1] for p in patches], width=0.4, color="tab:red", alpha=0.7,
               label="tiny Qwen3-VL (random weights): kept per temporal patch")
    bottom.plot([i / 4.0 for i in range(len(pixel_budget))], pixel_budget, "k.-",
                label="pixel features: the causal rule's budget per frame")
    for ax in (top, bottom):
        for c in cuts:
            ax.axvline(c, color="grey", ls="--", lw=1)
        ax.grid(alpha=0.3)
    bottom.set_xlabel("stream time (s); dashed: hard cuts")
    bottom.set_ylabel("tokens kept")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_stream_demo(out_dir: Path, retain_ratio: float, prompt: str) -> None:
    """Print the stream as it plays, ask mid-stream and at the end, write ``stream.png``."""
    import torch

    import vcast
    from vcast.bench.clips import make_clip
    from vcast.bench.features import pixel_token_features
    from vcast.core.causal import causal_select
    from vcast.testing import tiny_model
    from vcast.video import load_video, write_video

    out_dir.mkdir(parents=True, exist_ok=True)
    fps = 4.0
    clip = make_clip("cuts", frames=16, size=(224, 320), seed=0)
    path = write_video(out_dir / "clip.mp4", clip.frames, fps=fps)
    frames, metadata = load_video(path)
    cuts = [c / fps for c in clip.cut_frames]
    times = [i / metadata.fps for i in metadata.frames_indices]
    typer.echo(f"1. {path}: {len(frames)} frames at {fps:g} fps, hard cuts at {', '.join(f'{c:g}s' for c in cuts)}; "
               "played into vcast.stream one frame at a time")
    model, processor = tiny_model("qwen3_vl")
    stream = vcast.stream(model, processor, vcast.VCastConfig(retain_ratio=retain_ratio))
    typer.echo(f"2. tiny random-weight Qwen3-VL, causal V-CAST at retain_ratio={retain_ratio:g} (Qwen3-VL pairs "
               "frames into temporal patches; a patch is committed when the next one gives its lookahead)")
    rows = []
    with torch.no_grad():
        for i in range(len(frames)):
            report = stream.add_frames(frames[i:i + 1], timestamps=[times[i]])
            kept = report["kept_per_frame"]
            note = f"committed {report['committed']} patch(es), kept {kept}" if report["committed"] else "waiting"
            typer.echo(f"   t={times[i]:5.2f}s frame {i:2d}: {note}; {report['video_tokens']} video tokens in the "
                       f"cache of {report['cache_length']}")
            rows.append({"time": times[i], "video_tokens": report["video_tokens"]})
            if i + 1 == ASK_AT:
                answer = stream.ask(prompt, max_new_tokens=8)
                typer.echo(f"   >> asked mid-stream: {prompt!r} -> {answer.text!r} ({answer.frames} patches, "
                           f"{answer.video_tokens} video tokens; random weights: the answer is noise)")
                rows[-1]["video_tokens"] = stream.stats["video_tokens"]
        answer = stream.ask(prompt, max_new_tokens=8)
    st = stream.stats
    typer.echo(f"   >> at the end: {answer.text!r}; kept {st['tokens_kept']}/{st['tokens_seen']} video tokens "
               f"({st['ratio_kept']:.0%}) over {st['frames_committed']} patches; the vision tower ran once per frame")
    pixel = causal_select(pixel_token_features(frames, (14, 20)), vcast.VCastConfig(retain_ratio=retain_ratio,
                                                                                    curvature="robust"))
    budget = pixel.frame_budget.tolist()
    step = stream.family.temporal_patch
    patches = [((times[i * step] + times[i * step + step - 1]) / 2, k)
               for i, k in enumerate(stream.selection().frame_budget.tolist())]
    png = plot_stream(rows, patches, budget, cuts, out_dir / "stream.png",
                      title=f"vcast.stream: the demo clip played frame by frame (retain_ratio={retain_ratio:g})")
    busiest = sorted(range(len(budget)), key=lambda t: -budget[t])[:2]
    typer.echo(f"3. wrote {png}: the cache growing as the clip plays; on pixel features (in place of a trained "
               f"encoder) the causal rule (robust curvature, one frame at a time) gives its largest budgets to "
               f"frames {sorted(busiest)}, cuts at frames {list(clip.cut_frames)}")
