"""``vcast generate``, ``vcast viz`` and ``vcast demo``: pruning on a real (or tiny) Video LLM."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import typer

from vcast.cli.app import app
from vcast.cli.output import JSON_HELP

DEMO_PROMPT = "What happens in this video?"
FLOPS_MODEL = "qwen3-vl-8b"


QWEN_TYPES = ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl")
RATIO_HELP = "Fraction of video tokens kept, in (0, 1], or 'auto' (the adaptive ratio, for any method)."


def parse_ratio(text: str) -> float | str:
    """``--retain-ratio``: a number, or ``"auto"``; anything else is handed to the config unchanged so
    the CLI and ``make_config`` reject it with the same :class:`~vcast.errors.ConfigError`."""
    try:
        return float(text)
    except ValueError:
        return text.strip().lower() if text.strip().lower() == "auto" else text


def _ratio_text(ratio: float | str) -> str:
    return ratio if isinstance(ratio, str) else f"{ratio:g}"


OMNI_TYPES = ("qwen2_5_omni", "qwen3_omni_moe")


def load_processor(source: str, local_files_only: bool, model_type: str):
    """The model's processor. transformers' Qwen video processors need torchvision; where it is not
    installed, the same processor is assembled with vcast's torch-only port of the video processor
    (:mod:`vcast.testing.qwen`: identical steps, resize and normalise done by torch), and a note
    says so on stderr."""
    import importlib.util

    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    from vcast.testing.loading import PORTED_MODEL_TYPES, load_processor_with_ports

    if importlib.util.find_spec("torchvision") is not None or model_type not in (*QWEN_TYPES, "llava_onevision",
                                                                                    *PORTED_MODEL_TYPES):
        return AutoProcessor.from_pretrained(source, local_files_only=local_files_only)
    if model_type in PORTED_MODEL_TYPES:
        typer.secho("note: torchvision is not installed; using vcast's torch-only video processor", err=True)
        return load_processor_with_ports(source, model_type, local_files_only=local_files_only)
    if model_type == "llava_onevision":
        from vcast.testing.llava import load_llava_onevision_processor

        typer.secho("note: torchvision is not installed; using vcast's torch-only video processor", err=True)
        return load_llava_onevision_processor(source, local_files_only=local_files_only)
    from vcast.testing.qwen import TorchQwen2VLVideoProcessor, TorchQwen3VLVideoProcessor, processor_class

    typer.secho("note: torchvision is not installed; using vcast's torch-only Qwen video processor", err=True)
    video_cls = TorchQwen3VLVideoProcessor if model_type.startswith("qwen3") else TorchQwen2VLVideoProcessor
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    return processor_class(model_type)(
        image_processor=AutoImageProcessor.from_pretrained(source, local_files_only=local_files_only),
        tokenizer=tokenizer,
        video_processor=video_cls.from_pretrained(source, local_files_only=local_files_only),
        chat_template=tokenizer.chat_template,
    )


def check_device(device: str) -> str:
    """The torch device for ``--device`` (``auto``: CUDA when available, else CPU); a device this
    torch build or machine cannot use raises :class:`~vcast.errors.InputError` before anything loads."""
    import torch

    from vcast.errors import InputError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"--device {device!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise InputError(f"--device {device}: this torch ({torch.__version__}) is a CPU-only build; install a "
                             "CUDA build of torch (https://pytorch.org/get-started/locally/) or use --device cpu")
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: torch sees no CUDA GPU on this machine (check the driver and "
                             "CUDA_VISIBLE_DEVICES), or use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: MPS is not available in this torch build or on this machine")
    return device


def _looks_like_a_path(text: str) -> bool:
    """True for what can only be a local path (absolute, ``./``, ``../``, ``~``, or more than one
    ``/``); hub ids are ``name`` or ``owner/name``."""
    return text.startswith(("/", "./", "../", "~", ".\\")) or Path(text).is_absolute() or text.count("/") > 1


def load_model(path: str, device: str = "auto", dtype: str = "auto"):
    """``(model, processor)`` from a local directory (``local_files_only``: never a download) or, if
    ``path`` is not a directory, a hub id (needs network). Failures raise :class:`~vcast.errors.InputError`
    (a model vcast cannot prune: :class:`~vcast.errors.UnsupportedModelError`), before the weights load."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from vcast.errors import InputError, UnsupportedModelError
    from vcast.models import supported_model_types

    device = check_device(device)
    local = Path(path).expanduser()
    if local.exists() and not local.is_dir():
        raise InputError(f"--model {path!r} is a file; pass the model directory (with config.json) or a hub id")
    if not local.exists() and _looks_like_a_path(path):
        raise InputError(f"--model {path!r}: no such directory (a local model is a directory with config.json; "
                         "a hub id looks like Qwen/Qwen3-VL-8B-Instruct)")
    is_dir = local.is_dir()
    source = str(local) if is_dir else path
    if dtype not in ("auto", "float32", "float16", "bfloat16"):
        raise InputError(f"--dtype must be auto, float32, float16 or bfloat16, got {dtype!r}")
    where = "the directory" if is_dir else "the hub (no such local directory, so it was read as a hub id)"
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=is_dir)
    except (OSError, ValueError, ImportError, KeyError) as err:
        raise InputError(f"cannot load model {path!r} from {where}: {str(err).splitlines()[0]}") from None
    if config.model_type not in supported_model_types():
        arch = ", ".join(getattr(config, "architectures", None) or []) or "no architectures listed"
        raise UnsupportedModelError(
            f"--model {path!r} is a {config.model_type!r} model ({arch}), not a Video LLM vcast can prune; "
            f"supported model types: {supported_model_types()}")
    try:
        processor = load_processor(source, is_dir, config.model_type)
        model_cls = AutoModelForImageTextToText
        if config.model_type in OMNI_TYPES:  # the whole Qwen-Omni model (thinker + talker): its own class
            import transformers

            model_cls = getattr(transformers, config.architectures[0])
        model = model_cls.from_pretrained(
            source, local_files_only=is_dir, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
        if getattr(model, "has_talker", False):
            model.disable_talker()  # text answers: the talker would read the unpruned prompt's hidden states
    except (OSError, ValueError, ImportError, KeyError) as err:
        raise InputError(f"cannot load model {path!r} from {where}: {str(err).splitlines()[0]}") from None
    return model.to(device).eval(), processor


def load_capped_video(video: Path, num_frames: int, processor=None, max_pixels: int | None = None,
                      max_side: int | None = None, *, default_cap: str | None = None, quiet: bool = False):
    """:func:`vcast.video.load_video` with the CLI's resolution caps (the processor's size unless
    ``max_pixels`` / ``max_side`` say less); says on stderr when the frames were decoded smaller."""
    from vcast.video import load_video, probe

    stored = probe(video)
    frames, metadata = load_video(video, num_frames=num_frames, processor=processor, max_pixels=max_pixels,
                                  max_side=max_side)
    if not quiet and (frames.shape[2], frames.shape[1]) != (stored["width"], stored["height"]):
        why = "the model's processor size" if processor is not None else default_cap or "--max-pixels / --max-side"
        if processor is not None and (max_pixels is not None or max_side is not None):
            why += " and --max-pixels / --max-side"
        typer.echo(f"note: decoded {video.name} at {frames.shape[2]}x{frames.shape[1]} (stored "
                   f"{stored['width']}x{stored['height']}; capped to {why})", err=True)
    return frames, metadata


def build_inputs(processor, prompt: str, frames, metadata):
    """Chat-formatted model inputs for one video and one question (a ``BatchFeature`` of tensors).

    A video shorter than the processor's temporal patch (a single frame for Qwen-VL) gets its last
    frame repeated up to one patch, as Qwen's processors themselves pad odd frame counts.
    """
    import copy

    import numpy as np

    from vcast.errors import InputError

    if not getattr(processor, "chat_template", None):
        raise InputError("the processor has no chat template, so the video placeholder cannot be placed; "
                         "use a chat/instruct checkpoint (its chat_template.jinja or processor config)")
    patch = int(getattr(getattr(processor, "video_processor", None), "temporal_patch_size", 1) or 1)
    if len(frames) < patch:
        pad = patch - len(frames)
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        metadata = copy.copy(metadata)
        metadata.frames_indices = list(metadata.frames_indices) + [metadata.frames_indices[-1]] * pad
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    extra = {}
    if getattr(getattr(processor, "video_processor", None), "use_token_compression", False):
        extra["use_token_compression"] = False  # VideoLLaMA3: vcast prunes the full frame grid in its place
    from vcast.testing import per_prompt_videos

    videos, metadata = per_prompt_videos(processor, [frames], [metadata], [1])
    return processor(text=[text], videos=videos, video_metadata=metadata, do_sample_frames=False,
                     return_tensors="pt", **extra)


class _FirstTokenClock:
    """A logits processor that records when generate() first asks for logits: the end of prefill."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, input_ids, scores):
        if self.at is None:
            self.at = time.perf_counter()
        return scores


def run_pruned(model, processor, inputs, config, max_new_tokens: int = 32) -> dict[str, Any]:
    """Generate greedily with ``config`` applied to ``model`` for this call only.

    Returns a dict: ``answer`` (text), ``new_tokens``, ``prefill_s`` (vision + pruning + LLM prefill,
    up to the first logits), ``generate_s``, ``sequence_before`` / ``sequence_after`` (prefill
    length), ``videos`` (per-video stats: frames, tokens per frame, tokens before/kept, per-frame
    budget, curvature) and ``selections`` (the :class:`~vcast.Selection` objects).
    """
    import torch
    from transformers import LogitsProcessorList

    from vcast.api import apply

    inputs = inputs.to(model.device)
    clock = _FirstTokenClock()
    handle = apply(model, config, processor=processor)  # InternVL reads its prompt with the processor
    lm = getattr(model, "thinker", model)  # the whole Qwen-Omni model answers through its thinker
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            out = lm.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                              logits_processor=LogitsProcessorList([clock]))
        total = time.perf_counter() - start
        stats = handle.stats
        selections = handle.selections
    finally:
        handle.remove()
    new = out[0, inputs["input_ids"].shape[1]:]
    return {
        "answer": processor.decode(new, skip_special_tokens=True),
        "new_tokens": int(new.numel()),
        "prefill_s": (clock.at - start) if clock.at is not None else total,
        "generate_s": total,
        "sequence_before": int(stats["prefill_length_before"]),
        "sequence_after": int(stats["prefill_length_after"]),
        "video_tokens_before": int(stats["video_tokens_before"]),
        "video_tokens_after": int(stats["video_tokens_after"]),
        "videos": stats["videos"],
        "selections": selections,
    }


def _print_report(result: dict[str, Any], method: str, ratio: float | str) -> None:
    from rich.table import Table

    from vcast.cli.output import console

    typer.echo(f"answer: {result['answer']!r}")
    table = Table("video", "time steps", "tokens/step", "tokens before", "kept", "ratio",
                  title=f"{method}, retain ratio {_ratio_text(ratio)}", title_justify="left",
                  caption="time step: a frame, or a temporal patch of frames (2 for Qwen-VL); tokens/step: video "
                  "tokens per time step after the merger; ratio: kept / before", caption_justify="left")
    for i, v in enumerate(result["videos"]):
        table.add_row(str(i), str(v["frames"]), str(v["tokens_per_frame"]), str(v["tokens_before"]),
                      str(v["tokens_kept"]), f"{v['ratio_used']:.3f}")
    console().print(table)
    for i, v in enumerate(result["videos"]):
        typer.echo(f"video {i} kept per time step: {v['kept_per_frame']}")
    typer.echo(f"prefill: {result['sequence_before']} -> {result['sequence_after']} tokens into the LLM, "
               f"{result['prefill_s'] * 1000:.0f} ms to the first token; generate "
               f"{result['generate_s'] * 1000:.0f} ms for {result['new_tokens']} new tokens")


@app.command("generate")
def generate(
    model_path: str = typer.Option(..., "--model", help="Model directory (or a hub id, which needs network)."),
    video: Path = typer.Option(..., "--video", help="Video file."),
    prompt: str = typer.Option(..., "--prompt", help="The question about the video."),
    retain_ratio: str = typer.Option("0.25", "--retain-ratio", help=RATIO_HELP),
    method: str = typer.Option("vcast", "--method", help="Pruning method (see `vcast methods`)."),
    num_frames: int = typer.Option(32, "--num-frames", help="Frames sampled evenly from the video."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Tokens to generate."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, float16 or bfloat16."),
    max_pixels: int = typer.Option(None, "--max-pixels", help="Cap on pixels per decoded frame "
                                   "(default: the model's processor size)."),
    max_side: int = typer.Option(None, "--max-side", help="Cap on the longer side of decoded frames, in pixels."),
    json_path: str = typer.Option(None, "--json", metavar="PATH", help=JSON_HELP),
) -> None:
    """Answer a question about a video with a pruned model; print the answer and the pruning stats.

    Frames are decoded at the size the model's processor uses (never larger), so memory follows
    the model, not the file.
    """
    from vcast.cli.output import to_stdout, write_json
    from vcast.errors import InputError
    from vcast.methods import make_config
    from vcast.video import probe

    if max_new_tokens < 1:
        raise InputError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    retain_ratio = parse_ratio(retain_ratio)
    config = make_config(method, retain_ratio=retain_ratio)
    probe(video)  # a broken file fails before the model loads
    model, processor = load_model(model_path, device, dtype)
    frames, metadata = load_capped_video(video, num_frames, processor, max_pixels, max_side)
    result = run_pruned(model, processor, build_inputs(processor, prompt, frames, metadata), config, max_new_tokens)
    if json_path is not None:
        payload = {k: v for k, v in result.items() if k != "selections"}
        payload |= {"model": model_path, "video": str(video), "method": method, "retain_ratio": retain_ratio,
                    "frames_indices": metadata.frames_indices, "frame_size": [int(frames.shape[1]),
                                                                            int(frames.shape[2])]}
        write_json(json_path, payload)
        if to_stdout(json_path):
            return
    _print_report(result, method, retain_ratio)


def model_view(model, processor, inputs, frames, selection, grid=None) -> tuple[tuple[int, int], Any, int]:
    """``(grid, step_frames, step)`` to draw a model's selection of one video: its ``(h, w)`` token grid
    (``grid`` from the pruning stats; else from ``video_grid_thw`` and the merge size), one frame per time
    step (the first frame of each temporal patch) and the frames per time step."""
    step = -(-len(frames) // selection.num_frames)
    if grid is not None:  # the family's own (h, w) token grid, from the pruning stats
        return (int(grid[0]), int(grid[1])), frames[::step][: selection.num_frames], step
    if "video_grid_thw" in inputs:  # Qwen: patch grid / spatial merge
        _, gh, gw = (int(x) for x in inputs["video_grid_thw"][0])
        merge = int(getattr(processor.video_processor, "merge_size", 1) or 1)
        grid = (gh // merge, gw // merge)
    else:  # LLaVA-OneVision: the pooled grid is square, one frame per step
        side = math.isqrt(selection.tokens_per_frame)
        grid = (side, selection.tokens_per_frame // side)
    return grid, frames[::step][: selection.num_frames], step


def _only_selection(result: dict[str, Any]):
    """The selection of the single video of a :func:`run_pruned` result."""
    from vcast.errors import InputError

    if len(result["selections"]) != 1:
        raise InputError(f"expected the selection of one video, got {len(result['selections'])} (a method that "
                         "selects inside the vision encoder cannot be drawn)")
    return result["selections"][0]


def _labels(metadata, steps: int, step: int) -> list[str]:
    fps, idx = metadata.fps, metadata.frames_indices
    if not fps or not idx:
        return [f"#{i}" for i in range(steps)]
    return [f"{idx[min(i * step, len(idx) - 1)] / fps:.2f}".rstrip("0").rstrip(".") + "s" for i in range(steps)]


@app.command("viz")
def viz(
    video: Path = typer.Option(..., "--video", help="Video file."),
    out: Path = typer.Option(Path("keep.png"), "--out", help="PNG to write."),
    model_path: str | None = typer.Option(None, "--model", help="Model directory; default: pixel features."),
    retain_ratio: str = typer.Option("0.25", "--retain-ratio", help=RATIO_HELP),
    method: str = typer.Option("vcast", "--method", help="Pruning method (see `vcast methods`)."),
    num_frames: int = typer.Option(16, "--num-frames", help="Frames sampled evenly from the video."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, ... (with --model)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, float16 or bfloat16 (with --model)."),
    max_pixels: int = typer.Option(None, "--max-pixels", help="Cap on pixels per decoded frame "
                                   "(default: the model's processor size, or 1024 px sides without --model)."),
    max_side: int = typer.Option(None, "--max-side", help="Cap on the longer side of decoded frames, in pixels."),
) -> None:
    """Draw which tokens survive: sampled frames with dropped tokens dimmed, curvature and budget curves.

    Without --model the tokens are the coverage benchmark's pixel features on a 32-pixel grid (the
    token size of Qwen-VL, at most 32 x 32 tokens, so frames are decoded at most 1024 px wide); with
    --model they are the model's own video tokens after its merger, decoded at its processor's size.
    """
    from vcast.methods import make_config
    from vcast.video import probe
    from vcast.viz import PIXEL_GRID_MAX_SIDE, pixel_selection, plot_selection

    retain_ratio = parse_ratio(retain_ratio)
    config = make_config(method, retain_ratio=retain_ratio)
    if model_path is None:
        frames, metadata = load_capped_video(
            video, num_frames, None, max_pixels, PIXEL_GRID_MAX_SIDE if max_side is None else max_side,
            default_cap=None if max_side is not None else f"{PIXEL_GRID_MAX_SIDE} px, the pixel-feature grid's "
            "largest useful size")
        sel, grid = pixel_selection(frames, retain_ratio, method)
        shown, step, source = frames, 1, "pixel-feature"
    else:
        probe(video)  # a broken file fails before the model loads
        model, processor = load_model(model_path, device, dtype)
        frames, metadata = load_capped_video(video, num_frames, processor, max_pixels, max_side)
        inputs = build_inputs(processor, "Describe the video.", frames, metadata)
        result = run_pruned(model, processor, inputs, config, max_new_tokens=1)
        sel = _only_selection(result)
        grid, shown, step = model_view(model, processor, inputs, frames, sel, result["videos"][0].get("grid"))
        source = f"{model.config.model_type}"
    total = sel.num_frames * sel.tokens_per_frame
    title = (f"{video.name}: {method} kept {sel.num_kept}/{total} {source} tokens ({sel.retain_ratio:.0%}), "
             f"{grid[0]}x{grid[1]} per time step")
    plot_selection(shown, sel, grid, out, labels=_labels(metadata, sel.num_frames, step), title=title)
    typer.echo(f"wrote {out}: {sel.num_kept}/{total} tokens kept, per time step {sel.frame_budget.tolist()}")


def _busiest(sel, cuts: list[int]) -> str:
    """The frames with the largest budgets (as many as there are cuts), and whether they sit at the cuts."""
    busiest = sorted(int(i) for i in sel.frame_budget.topk(len(cuts)).indices)
    at_cuts = all(any(b in (c - 1, c) for c in cuts) for b in busiest)
    return f"{busiest}{', each at a cut' if at_cuts else ''}"


def _tflops(x: float) -> str:
    return f"{x / 1e12:.2f} TFLOPs"


@app.command("demo")
def demo(
    out_dir: Path = typer.Option(None, "--out", "--out-dir", help="Directory for the clip and the PNGs "
                                 "(default: a new temporary directory, printed at the end)."),
    retain_ratio: str = typer.Option("0.25", "--retain-ratio", help=RATIO_HELP),
    method: str = typer.Option("vcast", "--method", help="Pruning method (see `vcast methods`)."),
    stream: bool = typer.Option(False, "--stream", help="Play the clip into vcast.stream frame by frame instead."),
    model_type: str = typer.Option("qwen3_vl", "--model-type",
                                   help="The tiny model's family (a vcast.testing.TINY_MODEL_TYPES entry)."),
) -> None:
    """Offline end-to-end tour: a clip from sample photos -> a tiny model (default Qwen3-VL) with pruning ->
    stats, pictures, and what a real Qwen3-VL-8B would save on such a clip. No network, no weights.
    With --stream: the clip fed frame by frame to a live stream, a question mid-stream."""
    explicit_out = out_dir is not None
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="vcast-demo-"))
    if stream:
        from vcast.cli.demo_stream import run_stream_demo

        run_stream_demo(out_dir, parse_ratio(retain_ratio), DEMO_PROMPT)
        typer.echo(f"wrote the clip and the picture to {out_dir}" + ("" if explicit_out else " (pass --out DIR "
                   "to choose where)"))
        return
    from vcast.bench.clips import make_clip
    from vcast.efficiency import compare
    from vcast.errors import InputError
    from vcast.methods import make_config
    from vcast.testing import TINY_MODEL_TYPES, tiny_model
    from vcast.video import load_video, write_video
    from vcast.viz import pixel_selection, plot_selection

    retain_ratio = parse_ratio(retain_ratio)
    if model_type not in TINY_MODEL_TYPES:
        raise InputError(f"--model-type must be one of {list(TINY_MODEL_TYPES)}, got {model_type!r}")
    config = make_config(method, retain_ratio=retain_ratio)
    out_dir.mkdir(parents=True, exist_ok=True)
    fps = 4.0
    clip = make_clip("cuts", frames=16, size=(224, 320), seed=0)
    path = write_video(out_dir / "clip.mp4", clip.frames, fps=fps)
    frames, metadata = load_video(path)
    cuts = list(clip.cut_frames)
    typer.echo(f"1. encoded {path}: {len(frames)} frames of {frames.shape[2]}x{frames.shape[1]} at {fps:g} fps, "
               f"three panning shots of scikit-image photos, hard cuts between frames "
               f"{' and '.join(f'{c - 1}|{c}' for c in cuts)}")
    model, processor = tiny_model(model_type)
    name = "Qwen3-VL" if model_type == "qwen3_vl" else model_type
    typer.echo(f"2. tiny random-weight {name} (vcast.testing.tiny_model): load_video -> processor -> "
               f"vcast.apply({method}, retain_ratio={_ratio_text(retain_ratio)}) -> generate")
    inputs = build_inputs(processor, DEMO_PROMPT, frames, metadata)
    result = run_pruned(model, processor, inputs, config, max_new_tokens=8)
    _print_report(result, method, retain_ratio)
    typer.echo("   (random weights: the answer is noise; the token accounting is real)")

    sel = _only_selection(result)
    grid, shown, step = model_view(model, processor, inputs, frames, sel, result["videos"][0].get("grid"))
    png = plot_selection(shown, sel, grid, out_dir / "keep.png", labels=_labels(metadata, sel.num_frames, step),
                         title=f"tiny {name} (random weights): {method} kept {sel.num_kept}/"
                               f"{sel.num_frames * sel.tokens_per_frame} video tokens ({sel.retain_ratio:.0%}); "
                               f"one panel per temporal patch of {step} frames")
    typer.echo(f"3. wrote {png}: the tiny model's kept tokens (bright) and dropped ones (dimmed), curvature "
               "and budget per time step (random weights: its curvature need not follow the cuts)")
    px_sel, px_grid = pixel_selection(frames, retain_ratio, method)
    px_png = plot_selection(
        frames, px_sel, px_grid, out_dir / "keep_pixels.png", labels=_labels(metadata, len(frames), 1),
        title=f"pixel features in place of a trained encoder: {method} kept {px_sel.num_kept}/"
              f"{px_sel.num_frames * px_sel.tokens_per_frame} tokens ({px_sel.retain_ratio:.0%}); "
              f"hard cuts at {', '.join(f'{c / fps:g}s' for c in cuts)}")
    typer.echo(f"   wrote {px_png}: the same clip on {px_grid[0]}x{px_grid[1]} pixel-feature tokens; the "
               f"largest budgets go to frames {_busiest(px_sel, cuts)}")
    if method == "vcast":
        robust, _ = pixel_selection(frames, retain_ratio, "vcast-robust")
        typer.echo(f"   (the paper's angle curvature is 1 at the first and last frame by definition; "
                   f"vcast-robust's largest budgets go to frames {_busiest(robust, cuts)})")

    r = compare(FLOPS_MODEL, frames=len(frames), height=frames.shape[1], width=frames.shape[2],
                retain_ratio=sel.retain_ratio if retain_ratio == "auto" else retain_ratio)
    v = r["vanilla"]
    typer.echo(f"4. Qwen3-VL-8B on such a clip ({len(frames)} frames of {frames.shape[2]}x{frames.shape[1]}, "
               f"{v['visual_tokens']} -> {r['kept_visual_tokens']} video tokens; analytic count): prefill "
               f"{_tflops(v['total_flops'])} -> {_tflops(r['total_flops'])}, saves "
               f"{_tflops(v['total_flops'] - r['total_flops'])} ({1 - r['total_prefill_flops_ratio']:.0%}); "
               f"LLM prefill -{1 - r['llm_prefill_flops_ratio']:.0%}, KV cache -{1 - r['kv_cache_ratio']:.0%}")
    typer.echo(f"wrote the clip and both pictures to {out_dir}" + ("" if explicit_out else " (pass --out DIR to "
               "choose where)"))
