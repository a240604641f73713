"""Per-sample pruning stats of an lmms-eval run (``--model_args ...,vcast_stats=PATH``).

PATH gets one JSON object per line, one line per sample (prefill row), in the order the samples ran::

    {"task": "videomme", "split": "test", "doc_id": 17, "method": "vcast", "config": {"retain_ratio": 0.25, ...},
     "videos": [{"frames": 32, "tokens_per_frame": 196, "tokens_before": 6272, "tokens_kept": 1568,
                 "ratio_used": 0.25}],
     "video_tokens_before": 6272, "video_tokens_after": 1568,
     "prompt_tokens_before": 6301, "prompt_tokens_after": 1597,
     "prefill_length_before": 6301, "prefill_length_after": 1597, "batch_rows": 1}

- ``config``: the method config (``MethodConfig.to_dict()``; None with ``method=none``);
- ``videos``: each video of the sample as vcast pruned it (its T x N grid; empty with ``method=none``
  or when the prefill held no video);
- ``video_tokens_*``: the video placeholder tokens in this sample's prompt (LLaVA-OneVision counts its
  kept newline token too), ``prompt_tokens_*``: its real (non-padding) tokens;
- ``prefill_length_*``: the padded length of the prefill the sample ran in, with ``batch_rows`` rows.

Samples are matched to rows by the order in which lmms-eval's model class reads their documents
(every class vcast wraps reads each sample's document once, in batch order, before its prefill).
A sample whose prefill never ran (a video that failed to load) leaves no line.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from pathlib import Path

import torch

from vcast.errors import VCastError

SUMMARY_KEYS = ("frames", "tokens_per_frame", "tokens_before", "tokens_kept", "ratio_used")


def rank_path(path: str | Path, rank: int, world_size: int) -> Path:
    """``path`` itself in a single-process run, ``<stem>.rank<k><suffix>`` for rank k of several."""
    path = Path(path)
    return path if world_size <= 1 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def assign_videos_to_rows(videos: list[dict], row_video_tokens: list[int]) -> list[list[dict]]:
    """Split the prefill's videos (prompt order, rows in turn) over its rows.

    One row takes them all. Several rows take consecutive videos whose ``tokens_before`` add up to
    each row's video-token count (exact for families whose video runs hold only the T x N grid).
    """
    if len(row_video_tokens) == 1:
        return [list(videos)]
    rows, i = [], 0
    for want in row_video_tokens:
        mine, got = [], 0
        while got < want and i < len(videos):
            mine.append(videos[i])
            got += int(videos[i]["tokens_before"])
            i += 1
        if got != want:
            raise VCastError(f"cannot match the prefill's videos to its rows (a row holds {want} video tokens, "
                             f"its videos {got}); write vcast_stats with batch_size=1")
        rows.append(mine)
    if i != len(videos):
        raise VCastError("the prefill holds more videos than its rows' video tokens; write vcast_stats with batch_size=1")
    return rows


class _View:
    """Passes everything but item access through to the wrapped object."""

    def __init__(self, data) -> None:
        self._data = data

    def __contains__(self, key) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self):
        return iter(self._data)

    def __getattr__(self, name: str):
        if name == "_data":  # not set yet (copy/pickle protocols): no recursion
            raise AttributeError(name)
        return getattr(self._data, name)


class _DocsLog(_View):
    """One split of a dataset; reading document ``i`` records ``(task, split, i)``."""

    def __init__(self, split_data, task: str, split: str, on_read) -> None:
        super().__init__(split_data)
        self._task, self._split, self._on_read = task, split, on_read

    def __getitem__(self, key):
        if isinstance(key, int) and not isinstance(key, bool):
            self._on_read((self._task, self._split, key))
        return self._data[key]


class _SplitsLog(_View):
    """One task's dataset (split name -> documents), handing out :class:`_DocsLog` splits."""

    def __init__(self, dataset, task: str, on_read) -> None:
        super().__init__(dataset)
        self._task, self._on_read = task, on_read

    def __getitem__(self, split):
        return _DocsLog(self._data[split], self._task, split, self._on_read)


class DocReadLog(dict):
    """lmms-eval's ``lm.task_dict`` (task name -> dataset) that records which documents are read."""

    def __init__(self, initial, on_read) -> None:
        super().__init__(initial)
        self._on_read = on_read

    def __getitem__(self, task):
        return _SplitsLog(super().__getitem__(task), task, self._on_read)


class StatsRecorder:
    """Writes one JSON line per prefill row of ``model`` to ``path`` (truncated on creation).

    Args:
        model: the transformers model lmms-eval generates with (hooks go on this instance).
        path: the JSON-lines file.
        handle: the vcast :class:`~vcast.PruneHandle` on ``model`` (None: unpruned).
        method: the method name written into each line.
    """

    def __init__(self, model: torch.nn.Module, path: str | Path, *, handle=None, method: str = "none") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self.handle, self.method = handle, method
        self.config = None if handle is None else handle.config.to_dict()
        cfg = model.config
        token = getattr(cfg, "video_token_id", None)
        if token is None:
            token = getattr(cfg, "video_token_index", None)
        self.video_token_id = int(handle.adapter.video_token_id) if handle is not None else token
        if self.video_token_id is None:
            raise VCastError(f"cannot find the video token id of {type(model).__name__} for vcast_stats")
        self.reads: deque = deque()
        self.records = 0
        self._lock = threading.Lock()
        self._before: dict | None = None
        self._hooks = [model.register_forward_pre_hook(self._pre, with_kwargs=True),
                       model.register_forward_hook(self._post, with_kwargs=True)]

    def watch(self, task_dict: dict) -> DocReadLog:
        """``task_dict`` wrapped so that document reads are queued for the next prefill rows."""
        return DocReadLog(task_dict, self.reads.append)

    def remove(self) -> None:
        """Take the hooks off the model."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _pre(self, module, args, kwargs) -> None:
        # newer transformers pass the cache to the top model as `cache`, older ones as `past_key_values`
        cache = next((kwargs[k] for k in ("cache", "past_key_values") if kwargs.get(k) is not None), None)
        ids = kwargs.get("input_ids")
        if ids is None or (cache is not None and cache.get_seq_length() > 0):
            return
        mask = kwargs.get("attention_mask")
        real = mask.sum(1) if isinstance(mask, torch.Tensor) and mask.ndim == 2 else torch.full(
            (ids.shape[0],), ids.shape[1])
        self._before = {
            "length": int(ids.shape[1]),
            "prompt": [int(x) for x in real.tolist()],
            "video": [int(x) for x in (ids == self.video_token_id).sum(1).tolist()],
            "stats": None if self.handle is None else self.handle.adapter.stats,
        }

    def _post(self, module, args, kwargs, output) -> None:
        before, self._before = self._before, None
        if before is None:
            return
        rows = len(before["prompt"])
        stats = None if self.handle is None else self.handle.adapter.stats
        pruned = stats is not None and stats is not before["stats"] and stats.get("videos") is not None
        if pruned:
            if stats["prompt_tokens_before"] != before["prompt"]:
                raise VCastError(f"vcast_stats: the pruned prefill's rows {stats['prompt_tokens_before']} are not "
                                 f"the model call's {before['prompt']}")
            per_row = assign_videos_to_rows([{k: v[k] for k in SUMMARY_KEYS} for v in stats["videos"]], before["video"])
            prompt_after, length_after = stats["prompt_tokens_after"], stats["prefill_length_after"]
        else:
            per_row, prompt_after, length_after = [[] for _ in range(rows)], before["prompt"], before["length"]
        with self._lock, self.path.open("a") as f:
            for r in range(rows):
                task, split, doc_id = self.reads.popleft() if self.reads else (None, None, None)
                dropped = before["prompt"][r] - prompt_after[r]
                f.write(json.dumps({
                    "task": task, "split": split, "doc_id": doc_id, "method": self.method, "config": self.config,
                    "videos": per_row[r],
                    "video_tokens_before": before["video"][r], "video_tokens_after": before["video"][r] - dropped,
                    "prompt_tokens_before": before["prompt"][r], "prompt_tokens_after": prompt_after[r],
                    "prefill_length_before": before["length"], "prefill_length_after": length_after,
                    "batch_rows": rows,
                }) + "\n")
                self.records += 1
