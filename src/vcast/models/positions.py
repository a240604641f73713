"""Position schemes of the model families: how kept tokens keep their original position ids.

The generic sequence pruning (:mod:`vcast.models.base`) gathers ``position_ids`` like every other sequence
tensor, so each kept token carries its original id. A scheme adds what its family's position code needs
around that:

- :class:`MRoPE`: 3-D ``(t, h, w)`` ids (Qwen-VL, Qwen3.5, GLM-4.xV, Qwen-Omni). The unpruned ids come from
  the family's ``get_rope_index``; the text row of generate()'s 4-row ids ``[text; t; h; w]`` is renumbered
  contiguously (transformers reads that row for masks and packed sequences) and shifted back by the row's
  dropped count on decode steps; the inner model's cached ``rope_deltas`` is set for the pruned layout.
- :class:`Rope1D`: plain 1-D ids (LLaVA, Gemma 4, InternVL, VideoLLaMA3). ``positions="original"`` keeps the
  gaps (and always passes a 2-D attention mask so gaps are not read as packed sequences);
  ``positions="compact"`` renumbers the pruned sequence and shifts decode steps by the dropped count.

Schemes are stateless singletons; ``kind`` and ``options`` describe them as data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from vcast.errors import ConfigError, InputError

if TYPE_CHECKING:
    from vcast.config import MethodConfig
    from vcast.models.base import DecodeState, RowPlan
    from vcast.models.family import FamilyAdapter


class PositionScheme:
    """How a family's position ids survive pruning (see the module docstring)."""

    kind: ClassVar[str] = ""
    options: ClassVar[tuple[str, ...]] = ("original",)

    def check(self, config: MethodConfig, family: str) -> None:
        if config.positions not in self.options:
            raise ConfigError(f"positions={config.positions!r} is not available for {family}, whose {self.kind} "
                              f"position ids vcast keeps as they are; use one of {list(self.options)}")

    def prefill(self, adapter: FamilyAdapter, kwargs: dict) -> dict:
        """Make ``kwargs["position_ids"]`` the unpruned prompt's ids (as the model itself would compute them)."""
        raise NotImplementedError

    def after_prune(self, adapter: FamilyAdapter, kwargs: dict, plan: RowPlan) -> dict:
        """Fix the gathered ids of the pruned prefill."""
        return kwargs

    def decode(self, adapter: FamilyAdapter, kwargs: dict, state: DecodeState) -> dict:
        """Decode-step ids after a pruned prefill."""
        return kwargs


class MRoPE(PositionScheme):
    """Qwen-style multimodal RoPE: every kept token keeps its ``(t, h, w)`` id."""

    kind = "mrope"

    def prefill(self, adapter, kwargs):
        if kwargs.get("position_ids") is None:
            kwargs["position_ids"] = adapter.rope_index(kwargs)
        positions = kwargs["position_ids"]
        if positions.ndim != 3 or positions.shape[0] not in (3, 4):
            raise InputError(f"{adapter.family_name} takes MRoPE position ids [3 or 4, B, L], got shape "
                             f"{tuple(positions.shape)}")
        return kwargs

    def after_prune(self, adapter, kwargs, plan):
        valid = adapter.valid_after(kwargs, plan)
        positions = kwargs["position_ids"]
        valid = valid.to(positions.device)
        if positions.shape[0] == 4:  # [text; t; h; w] from generate(): renumber the text row contiguously
            text = (valid.long().cumsum(-1) - 1).masked_fill(~valid, 0)
            positions = torch.cat([text[None], positions[1:]], dim=0)
            kwargs["position_ids"] = positions
        info = torch.finfo if positions.is_floating_point() else torch.iinfo  # Qwen3-Omni's ids are float
        mrope = positions[-3:].masked_fill(~valid[None], info(positions.dtype).min)
        deltas = mrope.amax(dim=(0, 2)) + 1 - valid.sum(1)
        adapter.hook_module.rope_deltas = deltas[:, None].to(positions.dtype)
        return kwargs

    def decode(self, adapter, kwargs, state):
        positions = kwargs.get("position_ids")
        if isinstance(positions, torch.Tensor) and positions.ndim == 3 and positions.shape[0] == 4:
            text = positions[0] - state.dropped.to(positions.device)[:, None]
            kwargs["position_ids"] = torch.cat([text[None], positions[1:]], dim=0)
        return kwargs


class Rope1D(PositionScheme):
    """1-D RoPE: kept tokens keep their ids (``"original"``) or are renumbered (``"compact"``)."""

    kind = "1d"
    options = ("original", "compact")

    def prefill(self, adapter, kwargs):
        b, length = kwargs["input_ids"].shape
        positions = kwargs.get("position_ids")
        if positions is None:  # what the LLM would use for the unpruned prompt
            positions = torch.arange(length, device=kwargs["input_ids"].device)
        if positions.ndim > 2 or positions.shape[-1] != length:
            raise InputError(f"position_ids of shape {tuple(positions.shape)} do not fit input_ids {(b, length)}; "
                             f"{adapter.family_name} takes 1-D position ids [B, L]")
        kwargs["position_ids"] = positions.expand(b, length)
        return kwargs

    def after_prune(self, adapter, kwargs, plan):
        if adapter.config.positions == "compact":
            # new column c of row b holds kept token number c - offset_b, from source column index[b, c]
            new_col = torch.arange(plan.length_after, device=plan.index.device)
            offset = (plan.length_after - (plan.length_before - plan.dropped))[:, None].to(plan.index.device)
            dropped_before = (plan.index - (new_col[None] - offset)).masked_fill(~plan.filled, 0)
            positions = kwargs["position_ids"]
            kwargs["position_ids"] = positions - dropped_before.to(positions.device)
        if kwargs.get("attention_mask") is None:  # position gaps must not read as packed sequences
            kwargs["attention_mask"] = plan.filled.long().to(kwargs["input_ids"].device)
        return kwargs

    def decode(self, adapter, kwargs, state):
        positions = kwargs.get("position_ids")
        if positions is None:  # manual loop: what the LLM would use after the unpruned prompt
            ids = kwargs["input_ids"] if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"][..., 0]
            generated = adapter.cache_length(kwargs) - state.length_after
            start = state.length_before + generated
            positions = torch.arange(start, start + ids.shape[1], device=ids.device).expand(ids.shape[0], -1)
        if adapter.config.positions == "compact":
            positions = positions - state.dropped.to(positions.device)[:, None]
        kwargs["position_ids"] = positions
        return kwargs


MROPE = MRoPE()
ROPE_1D = Rope1D()
