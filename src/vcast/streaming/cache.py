"""The stream's KV cache: transformers' ``DynamicCache`` plus a table saying what each slot holds.

Slots are appended in prompt order and removed only by eviction (``keep``), which gathers every
layer's keys and values along the sequence axis: the rotary embedding is already inside the cached
keys, so the survivors keep their positions exactly. Answers extend the cache and are cut off again
(:meth:`StreamCache.truncate`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from vcast.errors import UnsupportedModelError


def _empty(dtype=torch.long) -> torch.Tensor:
    return torch.zeros(0, dtype=dtype)


@dataclass
class SlotTable:
    """Per cache slot (host tensors, all of length L).

    Attributes:
        frame: ``LongTensor[L]``, the LLM frame a slot belongs to (its video token or the text around
            it); -1 for text that is always kept (the prompt prefix).
        video: ``BoolTensor[L]``, True on video tokens.
        grid: ``LongTensor[L]``, a video token's index in its frame's ``N`` (-1 on text).
        rank: ``LongTensor[L]``, a video token's dual-anchor rank in its frame (-1 on text).
        log_weight: ``FloatTensor[L]`` (float64), the frame's ``c / tau`` (0 on text).
        curvature: ``FloatTensor[L]``, the frame's causal curvature (0 on text).
    """

    frame: torch.Tensor = field(default_factory=_empty)
    video: torch.Tensor = field(default_factory=lambda: _empty(torch.bool))
    grid: torch.Tensor = field(default_factory=_empty)
    rank: torch.Tensor = field(default_factory=_empty)
    log_weight: torch.Tensor = field(default_factory=lambda: _empty(torch.float64))
    curvature: torch.Tensor = field(default_factory=lambda: _empty(torch.float32))

    FIELDS = ("frame", "video", "grid", "rank", "log_weight", "curvature")

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    def append(self, **columns: torch.Tensor) -> None:
        for name in self.FIELDS:
            value = columns[name].to("cpu", getattr(self, name).dtype)
            setattr(self, name, torch.cat([getattr(self, name), value]))

    def select(self, index: torch.Tensor) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[index])

    @property
    def video_count(self) -> int:
        return int(self.video.sum())


def text_slots(n: int) -> dict[str, torch.Tensor]:
    """Table columns for ``n`` always-kept text slots."""
    return {"frame": torch.full((n,), -1), "video": torch.zeros(n, dtype=torch.bool), "grid": torch.full((n,), -1),
            "rank": torch.full((n,), -1), "log_weight": torch.zeros(n, dtype=torch.float64),
            "curvature": torch.zeros(n)}


class StreamCache:
    """A ``DynamicCache`` and its :class:`SlotTable`, driven through the model's inner forward."""

    def __init__(self, inner: torch.nn.Module) -> None:
        from transformers import DynamicCache

        self.inner = inner
        self.kv = DynamicCache()
        self.table = SlotTable()
        params = inspect.signature(inner.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.24

    def __len__(self) -> int:
        return self.kv.get_seq_length()

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, video=None) -> torch.Tensor:
        """Append ``ids[q]`` with position ids ``positions[R, q]`` (R = 3: MRoPE, the text row is the
        cache slot; R = 1: 1-D) and the video features ``video`` (an ``mm_encoder_outputs["video"]``
        object for the video placeholders in ``ids``). Returns the last hidden states ``[1, q, H]``."""
        device = next(self.inner.parameters()).device
        past, q = len(self), ids.shape[0]
        if positions.shape[0] == 3:
            slots = torch.arange(past, past + q)[None]
            position_ids = torch.cat([slots, positions])[:, None, :]
        else:
            position_ids = positions
        kwargs = {"input_ids": ids[None].to(device), "position_ids": position_ids.to(device),
                  "attention_mask": torch.ones(1, past + q, dtype=torch.long, device=device), self.cache_arg: self.kv}
        if video is not None:
            kwargs["mm_encoder_outputs"] = {"video": video}
        return self.inner(**kwargs).last_hidden_state

    def _layers(self):
        for layer in self.kv.layers:
            if type(layer).__name__ != "DynamicLayer":
                raise UnsupportedModelError(f"vcast streams edit full-attention caches only; this model's cache "
                                            f"has a {type(layer).__name__} (sliding window or quantised layers)")
            yield layer

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the slots ``index`` (sorted ``LongTensor``) in every layer and in the table."""
        for layer in self._layers():
            idx = index.to(layer.keys.device)
            layer.keys = layer.keys.index_select(-2, idx)
            layer.values = layer.values.index_select(-2, idx)
        self.table.select(index)

    def truncate(self, length: int) -> None:
        """Cut the KV cache back to ``length`` slots (after an answer; the table is not extended by answers)."""
        if len(self) > length:
            for layer in self._layers():
                layer.keys = layer.keys[..., :length, :]
                layer.values = layer.values[..., :length, :]
