"""Families whose processor writes every video frame as an image block (InternVL, SmolVLM).

These models have no video path: the processor turns each video into its frames, writes each frame as the
same image block an image gets (a run of ``n`` image-context tokens between block markers) after a per-frame
text (``Frame3:``, ``Frame from 00:02:``), and puts the frames into ``pixel_values`` next to the images, in
prompt order; ``get_image_features`` encodes all of them and the model scatters the output, flattened in
prompt order, into the image-context tokens. ``input_ids`` alone cannot tell a one-tile image from a frame,
so :class:`ImageBlockFamily` reads the text between consecutive context runs with the processor's tokenizer:

- a run whose preceding text ends as a video's first frame does (``frame_first``) starts a video;
- a run whose text since the previous frame run is exactly a frame separator (``frame_next``) continues it
  (a named group ``index`` in the pattern must count 2, 3, ... as the processor numbers them);
- any other run is an image (kept whole); a run announced like a frame that fits neither (a frame number out
  of order, a frame of another size, a block not closed right after its context tokens) raises, so no token is
  taken for a frame by guess.

A family declares ``frame_first``, ``frame_next`` and ``frame_hint`` (patterns over the decoded text, built
from the tokenizer's own special tokens by :meth:`ImageBlockFamily.patterns`), ``block_end`` (the tokenizer
attribute naming the token that closes a frame block, and its usual value) and :meth:`ImageBlockFamily.tokens_per_frame`. Frames are
kept at the prompt's 1-D positions (``"original"`` or ``"compact"``); the frame text, the block markers and
every image are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import torch

from vcast.errors import InputError, UnsupportedModelError
from vcast.models.base import VideoBatch
from vcast.models.family import NEEDS_INPUT_IDS, FamilyAdapter
from vcast.models.positions import ROPE_1D


@dataclass
class Blocks:
    """The image-context runs of one prefill, in row-major prompt order."""

    rows: list[int]           # batch row of each run
    starts: list[int]         # column of the run's first context token
    lengths: list[int]        # context tokens in the run
    videos: list[list[int]]   # per video, its frame runs (indices into the lists above)
    output: object = None     # the image encoder output


class ImageBlockFamily(FamilyAdapter):
    """Prefill pruning for families whose frames are image blocks found with the tokenizer (module docstring)."""

    needed = ("get_image_features",)
    video_token = "image_token_id"
    runs = "frame"
    positions = ROPE_1D
    block_end: ClassVar[tuple[str, str]] = ("", "")  # (tokenizer attribute, default) of the token closing a frame
    frames_as: ClassVar[str] = ""  # how the processor writes a frame, for the error without a processor
    # A tensor pooler_output is rebuilt as one block of all kept tokens, [1, L, D] ("one"), or as blocks of one
    # token each, [L, 1, D] ("per_token"), whichever the model's scatter reads in row-major prompt order.
    tensor_blocks: ClassVar[str] = "one"

    def __init__(self, model, config, processor=None) -> None:
        super().__init__(model, config, processor)
        tokenizer = getattr(processor, "tokenizer", processor)
        if tokenizer is None or not hasattr(tokenizer, "decode"):
            raise UnsupportedModelError(
                f"{self.family_name}'s processor writes each video frame as an image block ({self.frames_as}), so "
                "input_ids alone cannot tell video frames from images. Pass the processor: "
                "vcast.apply(model, config, processor=processor)")
        self.tokenizer = tokenizer
        self.end_id = int(tokenizer.convert_tokens_to_ids(getattr(tokenizer, self.block_end[0], self.block_end[1])))
        self.frame_first, self.frame_next, self.frame_hint = (re.compile(p) for p in self.patterns(tokenizer))

    def patterns(self, tokenizer) -> tuple[str, str, str]:
        """``(frame_first, frame_next, frame_hint)`` regexes over decoded text: searched at the end of the text
        before a video's first frame run; matching the whole text between two frame runs of a video; searched at
        the end of the text before any run announced as a frame."""
        raise NotImplementedError

    def tokens_per_frame(self) -> int:
        """Context tokens of one frame (one single-tile image block)."""
        raise NotImplementedError

    def has_new_videos(self, kwargs: dict) -> bool:
        return False  # videos arrive as images; a new image after the prefill is the model's own business

    def scan(self, input_ids: torch.Tensor) -> Blocks:
        """The context runs of ``input_ids [B, L]`` and which of them are the frames of which video."""
        context = input_ids == self.video_token_id
        edges = torch.nn.functional.pad(context, (1, 1)).to(torch.int8).diff(dim=1)
        starts, ends = (edges == 1).nonzero().tolist(), (edges == -1).nonzero()[:, 1].tolist()
        ids, n = input_ids.tolist(), self.tokens_per_frame()
        blocks = Blocks([], [], [], [])
        prev_row, prev_end, frame = -1, 0, 0  # frame: ordinal of the last run in the current video (0: none)
        for (row, start), end in zip(starts, ends):
            if row != prev_row:
                prev_row, prev_end, frame = row, 0, 0
            text = self.tokenizer.decode(ids[row][prev_end:start])
            one_frame = end - start == n and end < len(ids[row]) and ids[row][end] == self.end_id
            following = self.frame_next.fullmatch(text) if frame else None
            if following is not None and one_frame and self._index_ok(following, frame + 1):
                blocks.videos[-1].append(len(blocks.starts))
                frame += 1
            elif self.frame_first.search(text) is not None and one_frame:
                blocks.videos.append([len(blocks.starts)])
                frame = 1
            elif self.frame_hint.search(text) is not None:
                raise InputError(
                    f"a {self.family_name} image block announced as a video frame ({text[-40:]!r}) holds {end - start} "
                    f"context tokens (a frame has {n}, closed by {self.tokenizer.convert_ids_to_tokens(self.end_id)}) or "
                    "does not follow the frame before it as the processor writes frames; vcast does not recognise this "
                    "prompt layout and will not guess which tokens are frames: build the prompt with the processor")
            else:
                frame = 0
            blocks.rows.append(row)
            blocks.starts.append(start)
            blocks.lengths.append(end - start)
            prev_end = end
        return blocks

    @staticmethod
    def _index_ok(match: re.Match, expected: int) -> bool:
        index = match.groupdict().get("index")
        return index is None or int(index) == expected

    def collect_videos(self, kwargs):
        mm = dict(kwargs.get("mm_encoder_outputs") or {})
        if mm.get("image") is None and kwargs.get("pixel_values") is None:
            return kwargs, None
        if kwargs.get("input_ids") is None:
            raise InputError(NEEDS_INPUT_IDS)
        blocks = self.scan(kwargs["input_ids"])
        if not blocks.videos:
            return kwargs, None  # images only: untouched
        enc = self.encoder_output(kwargs, mm, "image", "pixel_values")  # frames are encoded as images
        kwargs["mm_encoder_outputs"] = mm
        kwargs = self.positions.prefill(self, kwargs)
        tokens = self.flat(enc)
        if tokens.shape[0] != sum(blocks.lengths):
            raise InputError(f"the prompt's image blocks hold {sum(blocks.lengths)} context tokens but the image "
                             f"encoder returned {tokens.shape[0]}")
        n = self.tokens_per_frame()
        first = torch.tensor([0, *blocks.lengths]).cumsum(0)[:-1]
        frames = [first[v][:, None] + torch.arange(n) for v in blocks.videos]
        features = [tokens[index] for index in frames]  # [T, n, D] per video
        blocks.output = enc
        rows, cols = self.frame_grid(n)
        return kwargs, VideoBatch(features, payload=blocks, grids=[(rows, cols)] * len(features))

    @staticmethod
    def flat(enc) -> torch.Tensor:
        """``[sum context tokens, D]``: the image encoder's output in prompt order."""
        pooled = enc.pooler_output
        if isinstance(pooled, (list, tuple)):
            pooled = torch.cat([p.reshape(-1, p.shape[-1]) for p in pooled])
        return pooled.reshape(-1, pooled.shape[-1])

    @staticmethod
    def frame_grid(n: int) -> tuple[int, int]:
        """The square ``(side, side)`` token grid of a frame (both families pixel-shuffle square tiles)."""
        side = int(round(n**0.5))
        if side * side != n:
            raise InputError(f"a frame block of {n} tokens is not a square grid")
        return side, side

    def video_columns(self, kwargs, batch):
        blocks = batch.payload
        cols = torch.zeros_like(kwargs["input_ids"], dtype=torch.bool)
        for v in blocks.videos:
            for b in v:
                cols[blocks.rows[b], blocks.starts[b]:blocks.starts[b] + blocks.lengths[b]] = True
        return cols

    def video_keep_masks(self, batch, selections):
        return [s.keep_mask().reshape(-1) for s in selections]

    def write_pruned(self, kwargs, batch, selections, plan):
        blocks = batch.payload
        tokens = self.flat(blocks.output)
        kept = [s.kept_features(f).to(f.dtype) for s, f in zip(selections, batch.features)]
        kept_frames = {b: part for v, k, s in zip(blocks.videos, kept, selections)
                       for b, part in zip(v, k.split(s.frame_budget.tolist()))}
        parts = list(tokens.split(blocks.lengths))
        parts = [kept_frames.get(b, part) for b, part in enumerate(parts)]
        new = type(blocks.output)(**dict(blocks.output.items()))
        if isinstance(blocks.output.pooler_output, (list, tuple)):
            new.pooler_output = tuple(parts)
        else:  # a tensor as the model takes it: one block of every token, or one token per block
            flat = torch.cat(parts)
            new.pooler_output = flat[None] if self.tensor_blocks == "one" else flat[:, None]
        kwargs["mm_encoder_outputs"] = {**kwargs["mm_encoder_outputs"], "image": new}
        return self.positions.after_prune(self, kwargs, plan)
