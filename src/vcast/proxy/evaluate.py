"""Accuracy of the proxy model: per family and overall, unpruned or under a pruning method.

Answers are the model's greedy next token after the prompt (the argmax over the whole vocabulary,
what ``generate(max_new_tokens=1)`` would emit), compared with the clip's one-token answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from vcast.proxy import tasks
from vcast.proxy.model import TOKEN_ID, encode

_ID_TO_TOKEN = {i: t for t, i in TOKEN_ID.items()}


@torch.no_grad()
def predict(model, processor, clips: Sequence[tasks.Clip], batch_size: int = 24,
            on_batch: Callable[[int], None] | None = None) -> list[str]:
    """The model's one-token answer to each clip (greedy over the full vocabulary).

    Args:
        model: a ``Qwen3VLForConditionalGeneration`` (possibly with a vcast pruning handle applied).
        processor: :func:`vcast.proxy.model.build_processor`.
        clips: the questions.
        batch_size: clips per forward pass.
        on_batch: called with the number of clips done after each batch (progress bars).
    """
    answers: list[str] = [""] * len(clips)
    for index in batch_indices(clips, batch_size):
        logits = model(**encode(processor, [clips[i] for i in index]), logits_to_keep=1).logits[:, -1]
        for i, token in zip(index, logits.argmax(-1).tolist()):
            answers[i] = _ID_TO_TOKEN.get(int(token), "<unk>")
        if on_batch is not None:
            on_batch(len(index))
    return answers


def batch_indices(clips: Sequence[tasks.Clip], batch_size: int) -> list[list[int]]:
    """Clip indices in batches of at most ``batch_size``, each batch of one clip length.

    Clips are grouped by frame count (in order of first appearance, clip order within a group), so
    a 16-frame prompt is never padded to a 64-frame one's length; callers put answers back in clip
    order through the indices.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        groups.setdefault(len(clip.frames), []).append(i)
    return [idx[s:s + batch_size] for idx in groups.values() for s in range(0, len(idx), batch_size)]


def accuracy(clips: Sequence[tasks.Clip], answers: Sequence[str]) -> dict:
    """``{"overall": acc, "families": {family: acc}, "n": count}`` (families in :data:`tasks.FAMILIES` order)."""
    if len(clips) != len(answers):
        raise ValueError(f"{len(clips)} clips but {len(answers)} answers")
    per: dict[str, list[int]] = {f: [0, 0] for f in tasks.FAMILIES}
    for clip, ans in zip(clips, answers):
        per[clip.family][0] += int(ans == clip.answer)
        per[clip.family][1] += 1
    fams = {f: round(c / n, 6) for f, (c, n) in per.items() if n}
    correct = sum(c for c, _ in per.values())
    return {"overall": round(correct / max(len(clips), 1), 6), "families": fams, "n": len(clips)}


# --- benchmark: every method at every ratio, through vcast.apply -------------------------------------

RATIOS = (0.5, 0.25, 0.15, 0.1)
# V-CAST settings measured besides each registered method's defaults (fixed in advance, not tuned
# on the test split): the spatio-temporal token-curvature extension, and V-CAST as the published
# budget code runs it (``reproduce="authors"``).
EXTRA_SETTINGS: tuple[tuple[str, dict], ...] = (("vcast", {"token_curvature_weight": 1.0}),
                                                ("vcast", {"reproduce": "authors"}))


def settings(methods: Sequence[str] | None = None, reproduce: str | None = None) -> list[tuple[str, dict]]:
    """``(method, options)`` pairs to measure: each registered method (defaults) plus :data:`EXTRA_SETTINGS`;
    with ``reproduce`` ("authors" / "vllm"), each method that has that mode (of ``methods``, which must),
    at its defaults and with ``reproduce=mode``."""
    from vcast.methods import get_method, list_methods

    if reproduce is not None:
        from vcast.bench.coverage import reproduce_variants

        return [(v.method, dict(v.overrides)) for v in reproduce_variants(reproduce, methods)]
    names = list_methods() if methods is None else list(methods)
    for name in names:
        get_method(name)  # unknown names raise ConfigError
    out = [(name, {}) for name in names]
    out += [(name, dict(opts)) for name, opts in EXTRA_SETTINGS if name in names]
    return out


class EncodedSplit:
    """A test split encoded once: processor outputs and vision-tower outputs per batch
    (batches of one clip length, see :func:`batch_indices`; answers come back in clip order).

    Pruning methods that act before the LLM (``prune_at="llm"``) read the vision tower's output, so
    it is computed once per batch and handed to the model as ``mm_encoder_outputs`` (the route
    ``generate()`` itself takes); the text inputs are the processor's, unchanged.
    """

    def __init__(self, model, processor, clips: Sequence[tasks.Clip], batch_size: int = 24) -> None:
        self.clips = list(clips)
        self.batches = []
        self.index = batch_indices(self.clips, batch_size)
        with torch.no_grad():
            for index in self.index:
                inputs = encode(processor, [self.clips[i] for i in index])
                video = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"],
                                                       return_dict=True)
                text = {k: v for k, v in inputs.items() if k != "pixel_values_videos"}
                self.batches.append((text, inputs, video))

    @staticmethod
    def _video_outputs(video):
        return type(video)(pooler_output=video.pooler_output, deepstack_features=list(video.deepstack_features))

    @torch.no_grad()
    def predict(self, model, precomputed: bool = True, handle=None) -> tuple[list[str], int, int]:
        """``(answers, video tokens before, video tokens after)`` over the split (counts from ``handle.stats``)."""
        answers: list[str] = [""] * len(self.clips)
        before = after = 0
        for index, (text, inputs, video) in zip(self.index, self.batches):
            if precomputed:
                out = model(**text, mm_encoder_outputs={"video": self._video_outputs(video)}, logits_to_keep=1)
            else:
                out = model(**inputs, logits_to_keep=1)
            for i, token in zip(index, out.logits[:, -1].argmax(-1).tolist()):
                answers[i] = _ID_TO_TOKEN.get(int(token), "<unk>")
            if handle is not None:
                before += int(handle.stats["video_tokens_before"])
                after += int(handle.stats["video_tokens_after"])
            else:
                n = int((inputs["input_ids"] == TOKEN_ID["<|video_pad|>"]).sum())
                before, after = before + n, after + n
        return answers, before, after


def run_benchmark(model, processor, clips: Sequence[tasks.Clip], *, methods: Sequence[str] | None = None,
                  ratios: Sequence[float] = RATIOS, batch_size: int = 24,
                  on_setting: Callable[[str], None] | None = None, reproduce: str | None = None) -> dict:
    """Accuracy of ``model`` unpruned and under every setting x ratio on ``clips``.

    Returns ``{"question_family": [family per clip], "unpruned": {**accuracy(...), "correct"},
    "results": [{"method", "options", "ratio", "kept_ratio", "overall", "retention", "families",
    "family_retention", "correct"}, ...]}``; ``correct`` is 0/1 per clip in clip order (what
    :mod:`vcast.proxy.report` pools over seeds), ``retention`` pruned accuracy divided by unpruned
    accuracy, ``kept_ratio`` the video tokens that reached the LLM over all tokens.
    ``reproduce``: see :func:`settings`; a setting whose published code cannot run at a ratio gets a
    row ``{"method", "options", "ratio", "not_runnable": reason}``.
    """
    import vcast

    split = EncodedSplit(model, processor, clips, batch_size)
    base_answers, _, _ = split.predict(model)
    base = {**accuracy(clips, base_answers), "correct": correct(clips, base_answers)}
    results = []
    for method, options in settings(methods, reproduce):
        for ratio in ratios:
            label = f"{method}{_fmt_options(options)} @ {ratio}"
            if on_setting is not None:
                on_setting(label)
            try:
                with vcast.enabled(model, method=method, retain_ratio=ratio, **options) as handle:
                    precomputed = handle.config.prune_at == "llm"
                    answers, before, after = split.predict(model, precomputed=precomputed, handle=handle)
            except vcast.ReproduceError as err:
                results.append({"method": method, "options": options, "ratio": ratio, "not_runnable": str(err)})
                continue
            acc = accuracy(clips, answers)
            results.append({
                "method": method, "options": options, "ratio": ratio,
                "kept_ratio": round(after / before, 6), "tokens_kept": after, "tokens_before": before,
                "overall": acc["overall"], "retention": _ratio(acc["overall"], base["overall"]),
                "families": acc["families"],
                "family_retention": {f: _ratio(a, base["families"][f]) for f, a in acc["families"].items()},
                "correct": correct(clips, answers),
            })
    return {"question_family": [c.family for c in clips], "unpruned": base, "results": results}


def correct(clips: Sequence[tasks.Clip], answers: Sequence[str]) -> list[int]:
    """1 where the answer is the clip's, else 0, in clip order."""
    return [int(a == c.answer) for c, a in zip(clips, answers, strict=True)]


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b > 0 else None


def _fmt_options(options: dict) -> str:
    return "" if not options else "(" + ",".join(f"{k}={v}" for k, v in options.items()) + ")"


def setting_label(row: dict) -> str:
    """``method(option=value,...)`` for tables and plots."""
    return row["method"] + _fmt_options(row["options"])
