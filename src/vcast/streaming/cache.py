"""The stream's KV cache: transformers' ``DynamicCache`` plus a table saying what each slot holds.

Slots are appended in prompt order and removed only by eviction (``keep``), which gathers every
layer's keys and values along the sequence axis: the rotary embedding is already inside the cached
keys, so the survivors keep their positions exactly. Answers extend the cache, which is then put back
as it was (:meth:`StreamCache.snapshot` / :meth:`StreamCache.restore`: references to the attention
layers' tensors, a copy of the linear-attention layers' fixed-size states).
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
    """The model's own cache (``DynamicCache(config)``: full, sliding-window or linear-attention layers, as
    the model would build it) and its :class:`SlotTable`, driven through the model's inner forward."""

    def __init__(self, inner: torch.nn.Module) -> None:
        from transformers import DynamicCache

        self.inner = inner
        self.kv = DynamicCache(config=inner.config)
        self.table = SlotTable()
        params = inspect.signature(inner.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.24
        text = inner.config.get_text_config(decoder=True)
        # Gemma 4 attends bidirectionally inside each frame's block, read from mm_token_type_ids
        self.blocks = bool(getattr(text, "use_bidirectional_attention", None)) and "mm_token_type_ids" in params
        window = getattr(text, "sliding_window", None)
        has_sliding = "sliding_attention" in (getattr(text, "layer_types", None) or ())
        self.window = int(window) if window and has_sliding else None

    def __len__(self) -> int:
        return int(self.kv.get_seq_length())  # a tensor from transformers 5.25's linear-attention layers

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, video=None,
                video_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Append ``ids[q]`` with position ids ``positions[R, q]`` (R = 3: MRoPE, the text row is the
        cache slot; R = 1: 1-D) and the video features ``video`` (an ``mm_encoder_outputs["video"]``
        object for the video placeholders ``video_mask[q]`` of ``ids``). Returns the last hidden states
        ``[1, q, H]``."""
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
        if self.blocks:
            # transformers' block mask indexes the type ids by cache position (q_idx, kv_idx), so they cover
            # the whole cache: the cached slots are typed text (no frame block spans two calls)
            types = torch.zeros(past + q, dtype=torch.long)
            if video_mask is not None:
                types[past:] = video_mask.long() * 2
            kwargs["mm_token_type_ids"] = types[None].to(device)
        return self.inner(**kwargs).last_hidden_state

    def _attention_layers(self):
        """The layers holding keys and values (linear-attention layers hold a fixed-size state instead)."""
        for layer in self.kv.layers:
            if hasattr(layer, "keys") and getattr(layer, "is_initialized", True) and layer.keys is not None:
                yield layer

    def keep(self, index: torch.Tensor) -> None:
        """Keep only the slots ``index`` (sorted ``LongTensor``) in every attention layer and in the table.

        Linear-attention layers (Qwen3.5's Gated DeltaNet) keep their state: it is a fixed-size summary of
        every token that entered, which cannot give one back. A sliding-window layer is edited like a full
        one while it still holds every slot (the stream checks that its cache fits the window)."""
        length = len(self.table)
        for layer in self._attention_layers():
            if layer.keys.shape[-2] != length:
                raise UnsupportedModelError(
                    f"a {type(layer).__name__} holds {layer.keys.shape[-2]} of the stream's {length} cache slots "
                    "(a sliding window that has slid, or a quantised cache); vcast can evict only from layers that "
                    "hold every slot")
            idx = index.to(layer.keys.device)
            layer.keys = layer.keys.index_select(-2, idx)
            layer.values = layer.values.index_select(-2, idx)
            if hasattr(layer, "cumulative_length"):
                layer.cumulative_length = int(index.shape[0])
        for layer in self.kv.layers:
            # transformers 5.25's linear-attention layers count the tokens seen (the cache's length when such a
            # layer comes first); the count follows the slots, the state itself is kept as it is
            if isinstance(getattr(layer, _LINEAR_COUNT, None), torch.Tensor):
                getattr(layer, _LINEAR_COUNT).fill_(int(index.shape[0]))
        self.table.select(index)

    def snapshot(self) -> list[dict]:
        """What :meth:`restore` needs to put the cache back as it is now (before a question).

        Attention layers append by making new tensors, so references to their keys and values (and a
        sliding window's length) suffice. Linear-attention layers update their convolution and recurrent
        states in place: the question works on copies of them and the originals are kept aside (one copy
        of the fixed-size state per question)."""
        saved = []
        for layer in self.kv.layers:
            entry = {k: getattr(layer, k) for k in _KV_FIELDS if hasattr(layer, k)}
            entry.update({k: dict(getattr(layer, k)) for k in _LINEAR_FLAGS if hasattr(layer, k)})
            if isinstance(getattr(layer, _LINEAR_COUNT, None), torch.Tensor):  # counted in place (5.25)
                entry[_LINEAR_COUNT] = getattr(layer, _LINEAR_COUNT)
                setattr(layer, _LINEAR_COUNT, entry[_LINEAR_COUNT].clone())
            for k in _LINEAR_STATES:
                if hasattr(layer, k):
                    states = getattr(layer, k)
                    entry[k] = dict(states)  # the originals
                    for i, t in states.items():
                        if t is not None:
                            states[i] = t.clone()
            saved.append(entry)
        return saved

    def restore(self, saved: list[dict]) -> None:
        """Put the cache back as it was at :meth:`snapshot` (after an answer)."""
        for layer, entry in zip(self.kv.layers, saved):
            for k, v in entry.items():
                setattr(layer, k, v)


_KV_FIELDS = ("keys", "values", "cumulative_length", "is_initialized")
_LINEAR_STATES = ("conv_states", "recurrent_states")
_LINEAR_FLAGS = ("is_conv_states_initialized", "is_recurrent_states_initialized", "has_previous_state")
_LINEAR_COUNT = "cumulative_length_linear"
