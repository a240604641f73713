"""The InternVL adapter (``model_type="internvl"``: InternVL 2.5 / 3 / 3.5 in transformers' own classes).

InternVL has no video path in the model: ``InternVLProcessor`` turns each ``<video>`` into its frames,
``"Frame1: <img>" + <IMG_CONTEXT> x n + "</img>\\nFrame2: <img>..."``, and puts every frame into
``pixel_values`` next to the image tiles, in prompt order; ``get_image_features`` encodes all of them
(``pooler_output [tiles + frames, n, D]``, n = ``(image_size / patch * downsample_ratio)**2``, a square
pixel-shuffled grid). ``input_ids`` alone cannot tell a one-tile image from a frame, so vcast reads the
text before each ``<img>`` block with the processor's tokenizer: a video is a maximal sequence of
single-tile blocks preceded by ``"Frame1: "``, ``"\\nFrame2: "``, ... (the exact strings the processor
writes). Apply with the processor: ``vcast.apply(model, config, processor=processor)``; without it,
vcast raises. The ``Frame{i}:`` text, the ``<img>`` / ``</img>`` markers and every image are kept.

Positions are 1-D (``"original"`` or ``"compact"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from vcast.errors import InputError, UnsupportedModelError
from vcast.models.base import VideoBatch
from vcast.models.family import NEEDS_INPUT_IDS, FamilyAdapter, register_family
from vcast.models.positions import ROPE_1D

_FRAME = re.compile(r"Frame(\d+): $")


@dataclass
class _Blocks:
    """The ``<img>`` blocks of one prefill, in row-major prompt order."""

    rows: list[int]           # batch row of each block
    starts: list[int]         # column of the first context token of each block
    lengths: list[int]        # context tokens in each block
    videos: list[list[int]]   # per video, its frame blocks (indices into the lists above)
    output: object = None     # the image encoder output
    masks: list[torch.Tensor] | None = None


@register_family
class InternVLAdapter(FamilyAdapter):
    """InternVL: videos are runs of ``Frame{i}:`` image blocks, found with the processor's tokenizer."""

    family_name = "InternVL"
    model_types = ("internvl",)
    needed = ("get_image_features", "language_model")
    video_token = "image_token_id"
    runs = "frame"
    positions = ROPE_1D

    def __init__(self, model, config, processor=None) -> None:
        super().__init__(model, config, processor)
        tokenizer = getattr(processor, "tokenizer", processor)
        if tokenizer is None or not hasattr(tokenizer, "decode"):
            raise UnsupportedModelError(
                "InternVL's processor turns each video frame into an image block ('Frame1: <img>...</img>'), so "
                "input_ids alone cannot tell video frames from images. Pass the processor: "
                "vcast.apply(model, config, processor=processor)")
        self.tokenizer = tokenizer
        self.start_id = int(tokenizer.convert_tokens_to_ids(getattr(tokenizer, "start_image_token", "<img>")))
        self.end_id = int(tokenizer.convert_tokens_to_ids(getattr(tokenizer, "end_image_token", "</img>")))

    def has_new_videos(self, kwargs: dict) -> bool:
        return False  # videos arrive as images; a new image after the prefill is the model's own business

    @property
    def tokens_per_tile(self) -> int:
        cfg = self.hook_module.config
        side = cfg.vision_config.image_size[0] // cfg.vision_config.patch_size[0]
        return int(side * side * cfg.downsample_ratio**2)

    def _blocks(self, input_ids: torch.Tensor) -> _Blocks:
        ids = input_ids.tolist()
        image = self.video_token_id
        rows, starts, lengths, videos = [], [], [], []
        for r, row in enumerate(ids):
            prev_end, last_frame = 0, 0
            for c, tok in enumerate(row):
                if tok != self.start_id:
                    continue
                length = 0
                while c + 1 + length < len(row) and row[c + 1 + length] == image:
                    length += 1
                before = self.tokenizer.decode(row[prev_end:c])
                match = _FRAME.search(before)
                k = int(match.group(1)) if match and length == self.tokens_per_tile else 0
                if k == 1:
                    videos.append([len(starts)])
                elif k > 1 and k == last_frame + 1 and before == f"\nFrame{k}: ":
                    videos[-1].append(len(starts))
                elif k:
                    raise InputError(f"an InternVL frame block 'Frame{k}:' follows {last_frame and f'Frame{last_frame}'}"
                                     f" with {before!r} between them; vcast does not recognise this video layout")
                else:
                    k = 0
                last_frame = k
                rows.append(r)
                starts.append(c + 1)
                lengths.append(length)
                end = c + 1 + length
                if end >= len(row) or row[end] != self.end_id:
                    raise InputError("an InternVL <img> block is not closed by </img> right after its context tokens")
                prev_end = end + 1
        return _Blocks(rows, starts, lengths, videos)

    def collect_videos(self, kwargs):
        mm = dict(kwargs.get("mm_encoder_outputs") or {})
        if mm.get("image") is None and kwargs.get("pixel_values") is None:
            return kwargs, None
        if kwargs.get("input_ids") is None:
            raise InputError(NEEDS_INPUT_IDS)
        blocks = self._blocks(kwargs["input_ids"])
        if not blocks.videos:
            return kwargs, None  # images only: untouched
        enc = self.encoder_output(kwargs, mm, "image", "pixel_values")  # frames are encoded as images
        kwargs["mm_encoder_outputs"] = mm
        kwargs = self.positions.prefill(self, kwargs)
        n = self.tokens_per_tile
        tiles = enc.pooler_output.reshape(-1, n, enc.pooler_output.shape[-1])
        if tiles.shape[0] * n != sum(blocks.lengths):
            raise InputError(f"the prompt's <img> blocks hold {sum(blocks.lengths)} context tokens but the encoder "
                             f"returned {tiles.shape[0]} tiles of {n}")
        first_tile = torch.tensor([0, *blocks.lengths]).cumsum(0)[:-1] // n
        features = [tiles[first_tile[v]] for v in blocks.videos]  # [T, n, D]: one tile per frame
        blocks.output = enc
        side = int(round(n**0.5))
        return kwargs, VideoBatch(features, payload=blocks, grids=[(side, n // side)] * len(features))

    def video_columns(self, kwargs, batch):
        blocks = batch.payload
        cols = torch.zeros_like(kwargs["input_ids"], dtype=torch.bool)
        for v in blocks.videos:
            for b in v:
                cols[blocks.rows[b], blocks.starts[b]:blocks.starts[b] + blocks.lengths[b]] = True
        return cols

    def video_keep_masks(self, batch, selections):
        masks = [s.keep_mask().reshape(-1) for s in selections]
        batch.payload.masks = masks
        return masks

    def write_pruned(self, kwargs, batch, selections, plan):
        blocks = batch.payload
        pooled = blocks.output.pooler_output
        tiles = pooled.reshape(-1, self.tokens_per_tile, pooled.shape[-1])
        frame_of = {b: (v, t) for v, frames in enumerate(blocks.videos) for t, b in enumerate(frames)}
        kept = [s.kept_features(f).to(f.dtype) for s, f in zip(selections, batch.features)]
        kept_frames = [list(k.split(s.frame_budget.tolist())) for k, s in zip(kept, selections)]
        parts, tile = [], 0
        for b, length in enumerate(blocks.lengths):
            count = length // self.tokens_per_tile
            if b in frame_of:
                v, t = frame_of[b]
                parts.append(kept_frames[v][t])
            else:
                parts.append(tiles[tile:tile + count].flatten(0, 1))
            tile += count
        new = type(blocks.output)(**dict(blocks.output.items()))
        new.pooler_output = torch.cat(parts)[None]
        kwargs["mm_encoder_outputs"] = {**kwargs["mm_encoder_outputs"], "image": new}
        return self.positions.after_prune(self, kwargs, plan)
