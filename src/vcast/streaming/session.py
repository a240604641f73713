"""A live video stream pruned as it arrives: :class:`VideoStream` (see :mod:`vcast.streaming`)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from vcast.config import VCastConfig
from vcast.core.causal import LOOKAHEAD_FRAMES, CausalState, causal_step, check_stream_config, trajectory
from vcast.core.evict import eviction_keys, skeleton_mask, skeleton_stride, survivors
from vcast.core.selection import Selection
from vcast.errors import ConfigError, InputError
from vcast.streaming.cache import StreamCache, text_slots
from vcast.streaming.config import StreamConfig
from vcast.streaming.families import Cursor, Encoded, resolve_family

# Chunks whose stats ``VideoStream.stats["chunks"]`` keeps (older ones are only counted).
STATS_HISTORY = 256
QUESTION = "{question}"
VIDEO_MARK = "\ue000vcast-video\ue000"  # stands for the video in the processor's expanded prompt text


@dataclass
class Answer:
    """What :meth:`VideoStream.ask` returns; ``str(answer)`` is the text.

    Attributes:
        text: the decoded answer (special tokens skipped).
        tokens: the generated token ids (greedy; the end-of-sequence token included when reached).
        logits: ``FloatTensor[steps, V]``, the logits of each generated token (``output_logits=True``).
        frames: LLM frames the answer saw; video_tokens: video tokens in the cache when it was asked.
    """

    text: str
    tokens: list[int]
    logits: torch.Tensor | None
    frames: int
    video_tokens: int

    def __str__(self) -> str:
        return self.text


@dataclass
class _Pending:
    """Encoded LLM frames not committed yet (waiting for their lookahead)."""

    encoded: Encoded
    means: torch.Tensor  # [P, D] trajectory
    times: list[tuple[float, float]]

    def __len__(self) -> int:
        return len(self.times)

    def split(self, n: int) -> tuple[_Pending, _Pending]:
        enc = self.encoded
        head = Encoded(enc.features[:n], [e[:n] for e in enc.extras])
        tail = Encoded(enc.features[n:], [e[n:] for e in enc.extras])
        return _Pending(head, self.means[:n], self.times[:n]), _Pending(tail, self.means[n:], self.times[n:])

    @staticmethod
    def join(a: _Pending | None, b: _Pending | None) -> _Pending | None:
        if a is None or not len(a):
            return b
        if b is None or not len(b):
            return a
        enc = Encoded(torch.cat([a.encoded.features, b.encoded.features]),
                      [torch.cat([x, y]) for x, y in zip(a.encoded.extras, b.encoded.extras)])
        return _Pending(enc, torch.cat([a.means, b.means]), a.times + b.times)


class VideoStream:
    """One live video, pruned causally into a KV cache as its frames arrive; questions at any time.

    Build it with :func:`vcast.stream`. Not thread-safe; one stream per model at a time (the cache
    belongs to the stream, the model's weights are shared and untouched).
    """

    def __init__(self, model, processor, config: VCastConfig, options: StreamConfig, template: str | None) -> None:
        from vcast.api import HANDLE_ATTR

        check_stream_config(config)
        if getattr(model, HANDLE_ATTR, None) is not None:
            raise InputError("this model has vcast pruning applied (vcast.apply); a stream prunes on its own: call "
                             "handle.remove() first")
        self.model, self.processor, self.config, self.options = model, processor, config, options
        if config.prune_at != "llm":
            raise ConfigError(f"streams select tokens after the vision tower; prune_at={config.prune_at!r} is not "
                              "supported, use prune_at='llm'")
        if config.positions != "original":
            raise ConfigError("streams keep every token's position from the whole video; use positions='original'")
        self.family = resolve_family(model, processor, config)
        self._template = template
        self._prefix = self._render(QUESTION)[0]
        self._cache = StreamCache(self.family.inner)
        self._prefix_length = len(self.family.tokenize(self._prefix, first=True))
        self._check_cap()
        self._state = CausalState()
        self._cursor: Cursor | None = None
        self._pending: _Pending | None = None
        self._raw: np.ndarray | None = None  # frames waiting to fill a temporal patch
        self._raw_times: list[float] = []
        self._frame_shape: tuple[int, int] | None = None
        self._last_time: float | None = None
        self._frames_seen = 0
        self._evicted = 0
        self._chunks: deque = deque(maxlen=STATS_HISTORY)
        self._num_chunks = 0

    # ----- prompt ------------------------------------------------------------------------------
    def _render(self, question: str) -> tuple[str, str]:
        """``(prefix, suffix)``: the prompt text before and after the video for ``question``."""
        token = self.family.video_token
        if self._template is not None:
            text = self._template.replace(QUESTION, question)
        else:
            if not getattr(self.processor, "chat_template", None):
                raise InputError(f"{type(self.processor).__name__} has no chat template; pass template= with the "
                                 f"prompt text, holding {token!r} where the video goes and '{QUESTION}'")
            messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if text.count(token) != 1:
            raise InputError(f"the prompt must hold the video token {token!r} exactly once, got {text.count(token)}")
        expand = getattr(self.processor, "get_text_with_replacements", None)
        if expand is not None:  # the processor's own expansion (e.g. transformers 5.25's Qwen3-VL drops the
            (text,), _ = expand([text], videos_replacements=[VIDEO_MARK])  # template's outer vision wrapper)
            token = VIDEO_MARK
        prefix, suffix = text.split(token)
        return prefix, suffix

    # ----- input checks -------------------------------------------------------------------------
    def _check_frames(self, frames, timestamps) -> tuple[np.ndarray, list[float]]:
        if isinstance(frames, torch.Tensor):
            frames = frames.detach().cpu().numpy()
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
            shape = getattr(frames, "shape", None)
            raise InputError(f"frames must be uint8[t, H, W, 3] (numpy or torch), got {type(frames).__name__} "
                             f"of shape {shape}; add one frame as frames[None]")
        if frames.dtype != np.uint8:
            raise InputError(f"frames must be uint8 RGB, got dtype {frames.dtype}")
        if frames.shape[0] == 0:
            raise InputError("empty chunk: add_frames needs at least one frame")
        if self._frame_shape is not None and tuple(frames.shape[1:3]) != self._frame_shape:
            raise InputError(f"frames are {frames.shape[1]}x{frames.shape[2]}, the stream's first chunk was "
                             f"{self._frame_shape[0]}x{self._frame_shape[1]}; every frame must have the same size")
        t = frames.shape[0]
        if timestamps is None:
            start = 0.0 if self._last_time is None else self._last_time + 1.0 / self.options.fps
            times = [start + i / self.options.fps for i in range(t)]
        else:
            times = [float(v) for v in np.asarray(timestamps, dtype=np.float64).reshape(-1)]
            if len(times) != t:
                raise InputError(f"got {len(times)} timestamps for {t} frames")
        if not all(math.isfinite(v) for v in times):
            raise InputError(f"timestamps must be finite seconds, got {times}")
        previous = self._last_time
        for v in times:
            if previous is not None and v <= previous:
                raise InputError(f"timestamps must increase: {v} s comes after {previous} s; a stream's frames "
                                 "arrive in order")
            previous = v
        return frames, times

    # ----- adding frames --------------------------------------------------------------------------
    @torch.no_grad()
    def add_frames(self, frames, timestamps=None) -> dict:
        """Add a chunk of frames: encode them once, commit the frames that now have their lookahead.

        Args:
            frames: ``uint8[t, H, W, 3]`` RGB (numpy or torch), the same ``H x W`` as the first chunk.
            timestamps: ``t`` increasing times in seconds since the video's start, after every earlier
                frame's (None: continue at ``fps`` frames per second).

        Returns:
            This chunk's stats (also the last entry of ``stats["chunks"]``): ``frames`` added,
            ``encoded`` and ``committed`` LLM frames, ``kept_per_frame``, ``curvature`` and ``evicted``
            of the committed frames, ``video_tokens`` and ``cache_length`` after the chunk.

        Raises:
            InputError: an empty chunk, frames of another size than the first chunk, a wrong dtype or
                shape, timestamps that do not increase. The stream is unchanged then.
        """
        frames, times = self._check_frames(frames, timestamps)
        raw = frames if self._raw is None else np.concatenate([self._raw, frames])
        raw_times = self._raw_times + times
        tp = self.family.temporal_patch
        complete = len(raw_times) // tp * tp
        new = None
        if complete:
            encoded = self.family.encode(raw[:complete])
            pairs = [(raw_times[i], raw_times[i + tp - 1]) for i in range(0, complete, tp)]
            new = _Pending(encoded, trajectory(encoded.features), pairs)
        # state changes only from here on
        self._frame_shape = tuple(frames.shape[1:3])
        self._last_time = times[-1]
        self._frames_seen += len(times)
        self._raw = raw[complete:] if complete < len(raw_times) else None
        self._raw_times = raw_times[complete:]
        old = self._pending
        fresh = 0 if new is None else len(new)
        look = LOOKAHEAD_FRAMES[self.config.curvature]
        ready = 0 if old is None else max(0, len(old) - max(0, look - fresh))
        self._pending = _Pending.join(old, new)
        report = self._commit(ready) if ready else self._empty_report()
        report.update(frames=len(times), encoded=fresh)
        self._record(report)
        return report

    def _empty_report(self) -> dict:
        return {"committed": 0, "kept_per_frame": [], "curvature": [], "evicted": 0}

    def _record(self, report: dict) -> None:
        report.update(video_tokens=self._cache.table.video_count,
                      video_slots=self.video_slots, cache_length=len(self._cache))
        self._num_chunks += 1
        self._chunks.append(report)

    def _start(self, first_time: float) -> None:
        ids = self.family.tokenize(self._prefix, first=True)
        rows = self.family.position_rows
        self._cache.forward(torch.tensor(ids), torch.arange(len(ids)).expand(rows, -1))
        self._cache.table.append(**text_slots(len(ids)))
        self._cursor = Cursor(video_start=len(ids), next=len(ids), first_time=first_time)

    def _check_cap(self) -> None:
        """Raise :class:`ConfigError` when ``max_video_tokens`` cannot work for this model."""
        cap = self.options.max_video_tokens
        if cap is None:
            return
        before, after = self.family.frame_ids(0, (0.0, 0.0))
        if cap < 1 + len(before) + len(after):
            raise ConfigError(f"max_video_tokens={cap} cannot hold one frame: a frame costs its tokens plus the "
                              f"{len(before) + len(after)} text slots {self.family.name}'s prompt writes around it")
        window = self._cache.window
        if window is not None and self._prefix_length + cap > window - 1:
            raise ConfigError(
                f"{self.family.name}'s sliding-window layers hold the last {window - 1} cache slots, and vcast evicts "
                f"only from layers that hold every slot: with the prompt's {self._prefix_length}, use "
                f"max_video_tokens <= {window - 1 - self._prefix_length}, or no cap (the windows then slide on "
                "their own and the full-attention layers grow)")

    def _commit(self, count: int, final: bool = False) -> dict:
        """Commit the first ``count`` pending frames (with the lookahead after them unless ``final``)."""
        head, tail = self._pending.split(count)
        look = LOOKAHEAD_FRAMES[self.config.curvature]
        lookahead = None if final or not len(tail) else tail.means[:look]
        step = causal_step(head.encoded.features, self._state, lookahead, self.config)
        if self._cursor is None:
            self._start(head.times[0][0])
        sel, n = step.selection, step.selection.tokens_per_frame
        first = self._state.frames
        # bookkeeping on the host (one copy of a few [K] / [P] tensors); features stay on their device
        keep = sel.keep_index.cpu()
        local = keep // n
        rank = step.token_rank.reshape(-1)[sel.keep_index].cpu()
        log_weight, curvature = step.log_weight.double().cpu(), sel.curvature.cpu()
        texts = [self.family.frame_ids(first + i, head.times[i]) for i in range(count)]
        text_len = torch.tensor([len(before) + len(after) for before, after in texts], dtype=torch.long)
        admit, evicted = self._make_room(first + local, rank, log_weight[local], text_len[local], step.state.frames)
        keep, local, rank = keep[admit], local[admit], rank[admit]
        counts = torch.bincount(local, minlength=count).tolist()
        grids, ranks = torch.split(keep % n, counts), torch.split(rank, counts)
        runs, columns, cursor = [], [], self._cursor
        for i in range(count):  # one run per committed frame: its text and its kept tokens
            run, cursor = self.family.frame_run(cursor, head.times[i], grids[i], texts[i])
            if evicted is not None and not counts[i]:
                continue  # every token of the frame left on arrival: so does its text
            q = run.ids.shape[0]
            grid_i, rank_i = torch.full((q,), -1), torch.full((q,), -1)
            grid_i[run.video], rank_i[run.video] = grids[i], ranks[i]
            runs.append(run)
            columns.append({"frame": torch.full((q,), first + i), "video": run.video, "grid": grid_i, "rank": rank_i,
                            "log_weight": log_weight[i].expand(q), "curvature": curvature[i].expand(q)})
        self._cursor = cursor
        if runs:
            video = None
            if keep.numel():
                feats = head.encoded.features.reshape(count * n, -1)
                index = keep.to(feats.device)
                video = self.family.mm_outputs(feats[index], [e.reshape(count * n, -1)[index]
                                                              for e in head.encoded.extras])
            self._cache.forward(torch.cat([r.ids for r in runs]), torch.cat([r.positions for r in runs], dim=1), video,
                                torch.cat([r.video for r in runs]))
            for column in columns:
                self._cache.table.append(**column)
        self._state = step.state
        self._pending = tail
        return {"committed": count, "kept_per_frame": counts, "curvature": [round(c, 6) for c in curvature.tolist()],
                "evicted": evicted or 0}

    def _frame_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(frames, text slots)``: the resident frames that hold text in the cache (sorted) and how much."""
        table = self._cache.table
        return torch.unique(table.frame[~table.video & (table.frame >= 0)], return_counts=True)

    def _make_room(self, frame: torch.Tensor, rank: torch.Tensor, log_weight: torch.Tensor, text: torch.Tensor,
                   frames_after: int) -> tuple[torch.Tensor, int | None]:
        """Admit the incoming kept tokens (their frames, ranks, log weights and their frames' text slots)
        under ``max_video_tokens``, which counts every slot the video holds: its tokens and the text of
        the frames that still have some. Cached tokens are evicted by the rule of :mod:`vcast.core.evict`.
        Returns ``(admitted mask over the incoming, cached tokens evicted)``; the count is None when the
        cap was not reached (no eviction pass)."""
        cap, table = self.options.max_video_tokens, self._cache.table
        incoming = frame.shape[0]
        first = rank == 0  # a frame's first token brings its frame's text
        if cap is None or self.video_slots + incoming + int(text[first].sum()) <= cap:
            return torch.ones(incoming, dtype=torch.bool), None
        slots = torch.nonzero(table.video).squeeze(1)
        cand_frame = torch.cat([table.frame[slots], frame])
        cand_rank = torch.cat([table.rank[slots], rank])
        cand_logw = torch.cat([table.log_weight[slots], log_weight])
        with_text, text_slots = self._frame_text()
        at = torch.searchsorted(with_text, table.frame[slots]).clamp(max=max(len(with_text) - 1, 0))
        resident_text = torch.where(with_text[at] == table.frame[slots], text_slots[at], 0) if len(with_text) else \
            torch.zeros(slots.shape[0], dtype=torch.long)
        cand_text = torch.cat([resident_text, text])
        cost = 1 + cand_text * (cand_rank == 0)
        per_frame = self.family.tokens_per_frame * float(self.config.retain_ratio) + float(text.double().mean())
        keys = eviction_keys(cand_logw, cand_rank, cand_frame, self.options.resolved_half_life(per_frame))
        # a skeleton frame costs its token and its text: the skeleton's share of the cache is `skeleton`
        skeleton = int(self.options.skeleton_slots / (1 + int(cand_text.max())))
        stride = skeleton_stride(frames_after, skeleton)
        keep = survivors(keys, skeleton_mask(cand_frame, cand_rank, stride), cap, cost)
        stay = keep[: slots.shape[0]]
        live = torch.unique(cand_frame[keep])
        slot_keep = (table.frame < 0) | (~table.video & torch.isin(table.frame, live))
        slot_keep[slots[stay]] = True
        evicted = int((~stay).sum())
        if evicted or not bool(slot_keep.all()):
            self._cache.keep(torch.nonzero(slot_keep).squeeze(1))
            self._evicted += evicted
        return keep[slots.shape[0]:], evicted

    @property
    def video_slots(self) -> int:
        """Cache slots the video holds now: its tokens and the text around the frames that have some
        (what ``max_video_tokens`` bounds); the rest of the cache is the prompt's prefix."""
        return len(self._cache.table) - self._prefix_length if len(self._cache.table) else 0

    # ----- questions ----------------------------------------------------------------------------
    @torch.no_grad()
    def ask(self, question: str, max_new_tokens: int = 64, *, output_logits: bool = False) -> Answer:
        """Answer ``question`` about everything seen so far, greedily, from the cache.

        The frames still waiting for their lookahead are committed first, as the current end of the
        video (the stream then continues after them). The question and the answer are prefilled after
        the video and cut off again afterwards: they do not stay in the context, so the next frames
        follow the video as if no question had been asked, and every question sees only the video.

        Args:
            question: the question text (put where the template's ``{question}`` is).
            max_new_tokens: at most this many tokens are generated (>= 1).
            output_logits: also return each generated token's logits.

        Raises:
            InputError: an empty question, ``max_new_tokens < 1``, or no complete frame yet (the stream
                is unchanged then).
        """
        if not isinstance(question, str) or not question.strip():
            raise InputError(f"question must be a non-empty string, got {question!r}")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        if self._state.frames == 0 and self._pending is None:
            waiting = f" ({len(self._raw_times)} frame(s) wait for a full temporal patch of " \
                      f"{self.family.temporal_patch})" if self._raw_times else ""
            raise InputError(f"ask() before any frame: add frames first{waiting}")
        prefix, suffix = self._render(question)
        if prefix != self._prefix:
            raise InputError("the chat template writes text that depends on the question before the video; "
                             "pass template= with the video first")
        if self._pending is not None and len(self._pending):
            report = self._commit(len(self._pending), final=True)
            report.update(frames=0, encoded=0, asked=True)
            self._record(report)
        saved = self._cache.snapshot()
        close, close_features, text_start = self.family.close_video(self._cursor)
        text = torch.tensor(self.family.tokenize(suffix), dtype=torch.long)
        rows = self.family.position_rows
        text_pos = (torch.arange(text.shape[0]) + text_start).expand(rows, -1)
        ids, positions, video, video_mask = text, text_pos, None, None
        if close is not None:
            ids = torch.cat([close.ids, text])
            positions = torch.cat([close.positions, text_pos], dim=1)
            video = self.family.mm_outputs(close_features, [])
            video_mask = torch.cat([close.video, torch.zeros(text.shape[0], dtype=torch.bool)])
        head = self.model.get_output_embeddings()
        eos = self.model.generation_config.eos_token_id
        eos = set([eos] if isinstance(eos, int) else (eos or []))
        tokens, logits = [], []
        next_pos = int(positions[-1, -1]) + 1
        try:
            hidden = self._cache.forward(ids, positions, video, video_mask)
            for step in range(max_new_tokens):
                step_logits = head(hidden[:, -1]).float()[0]
                tok = int(step_logits.argmax())
                tokens.append(tok)
                if output_logits:
                    logits.append(step_logits)
                if tok in eos or step == max_new_tokens - 1:
                    break
                hidden = self._cache.forward(torch.tensor([tok]), torch.full((rows, 1), next_pos + step))
        finally:
            self._cache.restore(saved)
        text_out = self.family.tokenizer.decode(tokens, skip_special_tokens=True)
        return Answer(text_out, tokens, torch.stack(logits) if output_logits else None, self._state.frames,
                      self._cache.table.video_count)

    # ----- what is kept -------------------------------------------------------------------------
    def selection(self) -> Selection:
        """The video tokens in the cache now, as a :class:`~vcast.Selection` over the committed LLM
        frames (flat indices into ``frames * N``; frames with nothing left report budget 0 and
        curvature 0). Without eviction this is every committed frame's causal selection."""
        if not self._state.frames:
            raise InputError("no frame is committed yet")
        table, n = self._cache.table, self.family.tokens_per_frame
        video = table.video
        flat = table.frame[video] * n + table.grid[video]
        order = torch.sort(flat).indices
        frames = self._state.frames
        budget = torch.bincount(table.frame[video], minlength=frames)
        curvature = torch.zeros(frames)
        curvature[table.frame[video]] = table.curvature[video]
        return Selection(flat[order], budget, curvature, frames, n)

    @property
    def stats(self) -> dict:
        """Where the stream stands.

        Keys: ``model_type``, ``config``, ``max_video_tokens``, ``frames_seen`` (raw frames added),
        ``frames_committed`` / ``frames_pending`` (LLM frames), ``tokens_seen`` (committed frames x N),
        ``tokens_kept`` (kept at commit), ``ratio_kept``, ``video_tokens`` and ``cache_length`` (now),
        ``evicted``, ``chunks_added``, and ``chunks``: the last 256 chunks' reports (see
        :meth:`add_frames`; a question's commit of pending frames is a report with ``asked``).
        """
        n = self.family.grid[0] * self.family.grid[1] if self.family.grid else None
        seen = self._state.frames * n if n else 0
        return {
            "model_type": self.model.config.model_type,
            "config": self.config.to_dict(),
            "max_video_tokens": self.options.max_video_tokens,
            "frames_seen": self._frames_seen,
            "frames_committed": self._state.frames,
            "frames_pending": 0 if self._pending is None else len(self._pending),
            "tokens_per_frame": n,
            "tokens_seen": seen,
            "tokens_kept": self._state.spent,
            "ratio_kept": round(self._state.spent / seen, 6) if seen else None,
            "video_tokens": self._cache.table.video_count,
            "video_slots": self.video_slots,
            "cache_length": len(self._cache),
            "evicted": self._evicted,
            "chunks_added": self._num_chunks,
            "chunks": [dict(c) for c in self._chunks],
        }

    def __repr__(self) -> str:
        return (f"VideoStream({type(self.model).__name__}, frames={self._state.frames}, "
                f"video_tokens={self._cache.table.video_count}, cap={self.options.max_video_tokens})")


def check_config(config) -> VCastConfig:
    """The stream's method config: a :class:`VCastConfig` (the causal rule is V-CAST's)."""
    if config is None:
        return VCastConfig()
    if not isinstance(config, VCastConfig):
        raise ConfigError(f"vcast.stream prunes with the causal V-CAST rule and takes a VCastConfig, got "
                          f"{type(config).__name__}")
    return config
