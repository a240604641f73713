"""Training batches for the proxy: processor-identical inputs built fast, per-token targets, thinning.

- :class:`FastEncoder` returns exactly what :func:`vcast.proxy.model.encode` (the real
  ``Qwen3VLProcessor``) returns for a list of clips, bit for bit (tested), at a fraction of the cost:
  the text of each distinct (question, clip shape) is run through the processor once and cached, and
  the pixels are the processor's fused rescale-and-normalise ``(x - 127.5) / 127.5`` followed by its
  patch layout. On this 2-core machine the processor cost ~25 ms per clip, a third of a training step.
- :func:`token_targets`: the per-token auxiliary targets of a group of clips.
- :func:`thin_selections`: which video tokens of each clip reach the LLM on a thinned step (the token
  curriculum of :mod:`vcast.proxy.train`), and :func:`pruned_to`, which runs the model with them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from vcast.core.selection import Selection
from vcast.methods._common import make_selection, mask_to_index
from vcast.proxy import tasks
from vcast.proxy.model import MERGE_SIZE, PATCH_SIZE, TEMPORAL_PATCH, encode

# Columns of :func:`token_targets`: ``Clip.labels`` (what, motion, cut, first), the quadrant, evidence.
WHAT, MOTION, CUT, FIRST, QUADRANT, EVIDENCE = range(6)


def pixel_rows(frames: np.ndarray) -> torch.Tensor:
    """``FloatTensor[T/2 * H/16 * W/16, 3 * 2 * 16 * 16]``: the Qwen3-VL video processor's
    ``pixel_values_videos`` rows for ``uint8[T, H, W, 3]`` frames (mean = std = 0.5, 16-px patches,
    temporal patch 2, merge 2: rows in merge-window order, each row (channel, time, y, x))."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = (x - 127.5) / 127.5  # the processor fuses rescale (1/255) and normalise (0.5, 0.5) into this
    t, c, h, w = x.shape
    p, m, tp = PATCH_SIZE, MERGE_SIZE, TEMPORAL_PATCH
    x = x.reshape(t // tp, tp, c, h // p // m, m, p, w // p // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(-1, c * tp * p * p)


class FastEncoder:
    """``encoder(clips)`` == ``encode(processor, clips)``: a left-padded ``BatchFeature``.

    The processor's text outputs depend only on the question and the clip's shape (frame count and
    size: the timestamps and the number of video tokens), so each such key is encoded once, on a
    blank clip, and cached; pixels come from :func:`pixel_rows`.
    """

    TEXT_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")

    def __init__(self, processor) -> None:
        self.processor = processor
        self._rows: dict[tuple, dict[str, torch.Tensor]] = {}

    def _text(self, clip: tasks.Clip) -> dict[str, torch.Tensor]:
        key = (clip.question, clip.frames.shape)
        if key not in self._rows:
            blank = tasks.Clip(frames=np.zeros_like(clip.frames), family=clip.family, question=clip.question,
                               answer=clip.answer, evidence=())
            out = encode(self.processor, [blank])
            self._rows[key] = {k: out[k][0] for k in self.TEXT_KEYS}
        return self._rows[key]

    def __call__(self, clips: Sequence[tasks.Clip]):
        from transformers import BatchFeature

        rows = [self._text(c) for c in clips]
        length = max(len(r["input_ids"]) for r in rows)
        pad = self.processor.tokenizer.pad_token_id
        batch = {}
        for key in self.TEXT_KEYS:
            fill = pad if key == "input_ids" else 0
            batch[key] = torch.stack([torch.cat([torch.full((length - len(r[key]),), fill, dtype=r[key].dtype),
                                                 r[key]]) for r in rows])
        batch["pixel_values_videos"] = torch.cat([pixel_rows(c.frames) for c in clips])
        batch["video_grid_thw"] = torch.tensor(
            [[len(c.frames) // TEMPORAL_PATCH, c.frames.shape[1] // PATCH_SIZE, c.frames.shape[2] // PATCH_SIZE]
             for c in clips])
        return BatchFeature(batch)


def token_targets(clips: Sequence[tasks.Clip]) -> torch.Tensor:
    """``LongTensor[sum(T/2 * G * G), 6]``: per video token, in the order the LLM sees them, the columns
    (what, motion, cut, first) of ``Clip.labels``, the token's quadrant of the frame (0-3) and whether
    the token shows the question's evidence: for ``order`` the earliest object (``first == 1``), for
    ``cuts`` nothing (a count needs every token), for every other family any drawn object or flash."""
    rows = []
    for clip in clips:
        labels = torch.from_numpy(clip.labels).long()  # [T/2, G, G, 4]
        g = labels.shape[1]
        half = torch.arange(g) >= g // 2
        quadrant = (2 * half[:, None] + half[None, :]).long().expand(*labels.shape[:-1])
        if clip.family == "cuts":
            evidence = torch.zeros_like(quadrant)
        elif clip.family == "order":
            evidence = (labels[..., FIRST] == 1).long()
        else:
            evidence = (labels[..., WHAT] > 0).long()
        rows.append(torch.cat([labels, quadrant[..., None], evidence[..., None]], dim=-1).reshape(-1, 6))
    return torch.cat(rows)


def thin_selections(rng: np.random.Generator, what: np.ndarray, ratios: np.ndarray,
                    objects: int = 1) -> list[Selection]:
    """Content-aware token thinning: per clip, which video tokens reach the LLM.

    Args:
        rng: the generator (one ``float[B, T, N]`` draw).
        what: ``uint8[B, T, N]`` the ``what`` label of every video token (0: nothing drawn there).
        ratios: ``float[B]``: clip ``b`` keeps ``max(1, round(N * ratios[b]))`` tokens of every temporal
            patch.
        objects: ``1``: tokens showing an object or flash come first, the rest at random (the training
            curriculum: the question stays answerable and only the background and the token count
            vary); ``-1``: they come last; ``0``: every token at random.

    Returns:
        one :class:`~vcast.Selection` per clip over its ``[T, N]`` grid (sorted indices).
    """
    if objects not in (-1, 0, 1):
        raise ValueError(f"objects must be -1, 0 or 1, got {objects!r}")
    b, t, n = what.shape
    keep = np.clip(np.round(n * np.asarray(ratios)), 1, n).astype(np.int64)
    order = np.argsort(-(rng.random((b, t, n)) + objects * (what > 0)), axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(n), (b, t, n)).copy(), axis=-1)
    masks = torch.from_numpy(ranks < keep[:, None, None])  # [B, T, N]
    return [make_selection(mask_to_index(m, t * int(k)), m.sum(1), t, n) for m, k in zip(masks, keep)]


@contextmanager
def pruned_to(model, selections: Sequence[Selection]) -> Iterator:
    """Within the block, ``model``'s next prefill keeps exactly ``selections`` (one
    :class:`~vcast.Selection` per video, in prompt order) through vcast's own adapter: pruned
    sequence, original MRoPE positions, deepstack rows, as every pruning method runs. Yields the handle
    (``handle.stats`` describes the prefill). For training and probes that choose tokens from the
    generator's labels rather than from features."""
    from vcast.api import enabled

    with enabled(model, method="random") as handle:
        handle.adapter.select = lambda features, grids=None: list(selections)
        yield handle
