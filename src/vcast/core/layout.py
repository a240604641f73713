"""Bookkeeping for a batch of videos with different shapes, so the selection runs without Python
loops over frames.

Videos are grouped by token count N (and dtype/device); each group is concatenated along the frame
axis into one dense ``[sum T, N, D]`` block for the bandwidth-bound passes. Everything per frame
and per token is then laid out *flat* in video order: frames ``0..F-1`` and tokens ``0..M-1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vcast.errors import InputError


def check_video(features: torch.Tensor, name: str = "features") -> None:
    """Raise :class:`InputError` unless ``features`` is a non-empty floating ``Tensor[T, N, D]``."""
    if not isinstance(features, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of shape [T, N, D], got {type(features).__name__}")
    if features.dim() != 3:
        raise InputError(
            f"{name} must have shape [T frames, N tokens per frame, D channels], got rank "
            f"{features.dim()} shape {tuple(features.shape)}; reshape a flat [T*N, D] tensor with "
            "features.view(T, N, D)"
        )
    if not features.is_floating_point():
        raise InputError(f"{name} must be floating point (fp32/fp16/bf16), got {features.dtype}")
    t, n, d = features.shape
    if t == 0 or n == 0 or d == 0:
        raise InputError(f"{name} is empty: shape {tuple(features.shape)} (need T, N, D >= 1)")


@dataclass
class BatchLayout:
    """Flat indexing of a list of videos.

    Attributes:
        frames: host list of T per video.
        tokens: host list of N per video.
        frame_video: ``LongTensor[F]``, video id of each flat frame.
        frame_tokens: ``LongTensor[F]``, N of each flat frame's video.
        frame_first / frame_last: ``BoolTensor[F]``, first / last frame of its video.
        frame_offset: ``LongTensor[B]``, index of each video's first flat frame.
        groups: list of (video ids, flat frame index ``LongTensor[sum T]``) per shape group.
    """

    frames: list[int]
    tokens: list[int]
    frame_video: torch.Tensor
    frame_tokens: torch.Tensor
    frame_first: torch.Tensor
    frame_last: torch.Tensor
    frame_offset: torch.Tensor
    groups: list[tuple[list[int], torch.Tensor]]

    @property
    def num_videos(self) -> int:
        return len(self.frames)

    @property
    def num_frames(self) -> int:
        return sum(self.frames)

    @classmethod
    def build(cls, videos: list[torch.Tensor], device: torch.device) -> BatchLayout:
        """Index a list of ``[T_b, N_b, D]`` videos (all on ``device``, same D)."""
        frames = [int(v.shape[0]) for v in videos]
        tokens = [int(v.shape[1]) for v in videos]
        offsets = [0]
        for t in frames:
            offsets.append(offsets[-1] + t)
        lengths = torch.tensor(frames, device=device)
        frame_video = torch.repeat_interleave(torch.arange(len(videos), device=device), lengths,
                                              output_size=offsets[-1])  # host size: no device sync
        frame_offset = torch.tensor(offsets[:-1], device=device, dtype=torch.long)
        local = torch.arange(offsets[-1], device=device) - frame_offset[frame_video]
        frame_first = local == 0
        frame_last = local == lengths[frame_video] - 1
        frame_tokens = torch.tensor(tokens, device=device)[frame_video]

        keyed: dict[tuple, list[int]] = {}
        for b, v in enumerate(videos):
            keyed.setdefault((tokens[b], v.dtype), []).append(b)
        groups = []
        for ids in keyed.values():
            if len(ids) == len(videos):
                idx = torch.arange(offsets[-1], device=device)
            else:
                idx = torch.cat([torch.arange(offsets[b], offsets[b + 1], device=device) for b in ids])
            groups.append((ids, idx))
        return cls(frames, tokens, frame_video, frame_tokens, frame_first, frame_last, frame_offset, groups)

    def segment_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum per-frame ``values[F, ...]`` into per-video ``[B, ...]``."""
        out = torch.zeros((self.num_videos, *values.shape[1:]), dtype=values.dtype, device=values.device)
        return out.index_add_(0, self.frame_video, values)

    def segment_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of per-frame ``logits[F]`` within each video (float32)."""
        if self.num_videos == 1:
            return torch.softmax(logits, dim=0)
        vmax = torch.full((self.num_videos,), float("-inf"), dtype=logits.dtype, device=logits.device)
        vmax = vmax.scatter_reduce(0, self.frame_video, logits, reduce="amax")
        e = torch.exp(logits - vmax[self.frame_video])
        return e / self.segment_sum(e)[self.frame_video]

    def rank_in_video(self, key: torch.Tensor) -> torch.Tensor:
        """Rank of each frame within its video by ``key[F]`` descending, ties to the lower index.

        Returns ``LongTensor[F]`` with ranks 0..T_b-1.
        """
        order = torch.sort(key, descending=True, stable=True).indices
        order = order[torch.sort(self.frame_video[order], stable=True).indices]
        pos = torch.arange(order.numel(), device=key.device)
        rank = torch.empty_like(order)
        rank[order] = pos - self.frame_offset[self.frame_video[order]]
        return rank

    def neighbours(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat indices of each frame's previous and next frame within its video.

        At the first (last) frame the missing neighbour is replaced by the other one; a one-frame
        video is its own neighbour. Returns two ``LongTensor[F]``.
        """
        idx = torch.arange(self.num_frames, device=self.frame_video.device)
        prev = torch.where(self.frame_first, idx + 1, idx - 1)
        nxt = torch.where(self.frame_last, idx - 1, idx + 1)
        single = self.frame_first & self.frame_last
        return torch.where(single, idx, prev), torch.where(single, idx, nxt)


def check_finite(values: torch.Tensor, what: str) -> None:
    """Raise :class:`InputError` if ``values`` (a small derived tensor) has NaN or inf."""
    if not bool(torch.isfinite(values).all()):
        raise InputError(
            f"{what} contain NaN or inf; the video features are not finite (check the vision "
            "encoder's dtype / overflow) and cannot be pruned"
        )
