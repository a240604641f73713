"""Pruning inside the Qwen3-VL vision encoder (``prune_at="vision:k"``).

The vision tower runs blocks ``0..k`` on every patch. The hidden states after block k are averaged
over each spatial merge group (``merge_size**2`` consecutive patches, one post-merger LLM token), so
the selection method scores exactly the units the LLM will see, laid out ``[T, N, D]`` per video.
The merge groups of dropped tokens are then removed, together with their rotary (cos, sin) rows,
and the per-frame ``cu_seqlens`` are rebuilt from the kept counts, before blocks ``k+1..`` and the
mergers run. Qwen3-VL's blocks attend only within a temporal group (one ``cu_seqlens`` segment per
``grid_t`` entry in transformers 5.23 ``get_vision_cu_seqlens``), and every other operation is per
patch, so the kept groups see exactly the computation of the full tower restricted to the kept
set: at ``retain_ratio=1.0`` the output equals the unpruned tower's.

Deepstack taps line up: a tap at a block ``<= k`` is gathered to the kept groups before its merger,
a tap at a later block is already restricted. The returned features are per video, in raster order
of the kept tokens; the selections carry their original flat indices (and hence original MRoPE
positions) for the LLM-side pruning.

Only Qwen3-VL (dense and MoE) qualifies. Qwen2.5-VL's windowed blocks would see different windows,
Qwen2-VL is not implemented, and LLaVA-OneVision pools after its projector; those raise
:class:`~vcast.errors.ConfigError` saying why (:func:`check_early_pruning_supported`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vcast.config import MethodConfig
from vcast.core.selection import Selection
from vcast.errors import ConfigError, UnsupportedModelError

EARLY_MODEL_TYPES = ("qwen3_vl", "qwen3_vl_moe")
_WHY_NOT = {
    "qwen2_5_vl": "Qwen2.5-VL's vision blocks attend inside 112 px windows (full attention only in "
    "fullatt_block_indexes); dropping merge groups changes which patches share a window, so "
    "the remaining blocks would not compute what the model computes.",
    "qwen2_vl": "early pruning is implemented and verified for Qwen3-VL only.",
    "llava_onevision": "LLaVA-OneVision pools 2x2 after its projector (bilinear, overlapping support), so a "
    "kept LLM token has no fixed patch group that could be dropped inside SigLIP.",
}
_REQUIRED = (
    "blocks",
    "merger",
    "deepstack_merger_list",
    "deepstack_visual_indexes",
    "patch_embed",
    "pos_embed",
    "rotary_pos_emb",
    "num_grid_per_side",
    "spatial_merge_size",
)

Selector = Callable[[list[torch.Tensor], list[tuple[int, int]]], list[Selection]]


def check_early_pruning_supported(model_type: str) -> None:
    """Raise :class:`ConfigError` explaining why ``prune_at="vision:k"`` does not apply to ``model_type``."""
    if model_type in EARLY_MODEL_TYPES:
        return
    why = _WHY_NOT.get(model_type, f"model_type {model_type!r} has no early-pruning support.")
    raise ConfigError(f"prune_at='vision:k' is not available for {model_type}: {why} Use prune_at='llm'.")


def method_selector(config: MethodConfig) -> Selector:
    """A selector running ``config``'s registered method on per-video ``[T, N, D]`` features and their
    ``(h, w)`` token grids (methods with a ``grid_hw`` option get each video's grid)."""
    from vcast.methods import get_method
    from vcast.methods.grid import run_with_grids

    spec = get_method(config.method)
    if spec.merges:
        raise ConfigError(
            f"method {spec.name!r} merges features, which needs the final vision features; "
            "use prune_at='llm' with it"
        )
    return lambda videos, grids: run_with_grids(spec, videos, config, grids)


@dataclass
class EarlyEncoding:
    """Result of :func:`encode_video_early`.

    Attributes:
        pooler_output: per video, ``Tensor[K_b, out_hidden]`` merger outputs of the kept tokens.
        deepstack_features: per deepstack level, a tuple of per-video ``Tensor[K_b, out_hidden]``.
        selections: per video, the :class:`Selection` (indices into that video's ``T*N`` tokens).
        last_hidden_state: ``Tensor[sum_b K_b * merge**2, hidden]``, the kept patches after the last block.
        block: k, the block after which the selection was made.
    """

    pooler_output: tuple[torch.Tensor, ...]
    deepstack_features: list[tuple[torch.Tensor, ...]]
    selections: list[Selection]
    last_hidden_state: torch.Tensor
    block: int


def _check_visual(visual: torch.nn.Module) -> None:
    missing = [name for name in _REQUIRED if not hasattr(visual, name)]
    if missing:
        raise UnsupportedModelError(
            f"{type(visual).__name__} lacks {missing}; early pruning follows the Qwen3-VL vision tower of "
            "transformers >= 5.17 (vision_utils helpers). Upgrade transformers or use prune_at='llm'."
        )


def _run_blocks(visual, hidden, blocks: range, cu_seqlens, max_seqlen, rotary, taps: dict) -> torch.Tensor:
    for i in blocks:
        hidden = visual.blocks[i](
            hidden, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen, position_embeddings=rotary
        )
        if i in visual.deepstack_visual_indexes:
            taps[i] = hidden
    return hidden


@torch.no_grad()
def encode_video_early(
    visual: torch.nn.Module, pixel_values: torch.Tensor, grid_thw: torch.Tensor, block: int, select: Selector
) -> EarlyEncoding:
    """Run a Qwen3-VL vision tower with token selection after block ``block``.

    Args:
        visual: the model's ``Qwen3VLVisionModel`` / ``Qwen3VLMoeVisionModel`` (``model.model.visual``).
        pixel_values: ``Tensor[sum_b T_b*H_b*W_b, C*temporal*patch*patch]`` as the processor returns it.
        grid_thw: ``LongTensor[B, 3]``, one ``(T, H, W)`` patch grid per video.
        block: k in ``0..depth-1``; the selection sees the hidden states after blocks ``0..k``.
        select: maps the per-video merge-group means ``[T_b, N_b, hidden]`` and the ``(h_b, w_b)`` token
            grids (``N_b = h_b * w_b``) to one Selection per video.

    Returns:
        :class:`EarlyEncoding` with the kept tokens' merger and deepstack outputs.
    """
    from transformers.utils.generic import get_max_seqlen
    from transformers.vision_utils import (
        get_vision_attention_seqlens,
        get_vision_interpolation_indices_and_weights,
        get_vision_position_ids,
    )

    _check_visual(visual)
    depth = len(visual.blocks)
    if not 0 <= block < depth:
        raise ConfigError(f"prune_at='vision:{block}' is outside this vision tower's blocks 0..{depth - 1}")
    cfg = visual.config
    merge = visual.spatial_merge_size
    unit = merge * merge
    interp_index, interp_weight = get_vision_interpolation_indices_and_weights(
        grid_thw,
        num_grid_per_side=visual.num_grid_per_side,
        mode=visual.interpolation_mode,
        align_corners=visual.interpolation_align_corners,
        spatial_merge_size=merge,
    )
    position_ids = get_vision_position_ids(grid_thw, merge)
    cu_seqlens, max_seqlen = get_vision_attention_seqlens(grid_thw, cfg)

    hidden = visual.patch_embed(pixel_values.type(visual.dtype))
    hidden = hidden + (visual.pos_embed(interp_index) * interp_weight[:, :, None]).sum(1).to(hidden.dtype)
    cos, sin = visual.rotary_pos_emb(hidden, position_ids)
    taps: dict[int, torch.Tensor] = {}
    hidden = _run_blocks(visual, hidden, range(block + 1), cu_seqlens, max_seqlen, (cos, sin), taps)

    grids = [tuple(int(x) for x in row) for row in grid_thw.tolist()]
    sizes = [t * (h // merge) * (w // merge) for t, h, w in grids]
    units = hidden.view(-1, unit, hidden.shape[-1]).mean(dim=1)
    videos = [u.view(t, -1, u.shape[-1]) for u, (t, _, _) in zip(torch.split(units, sizes), grids)]
    selections = select(videos, [(h // merge, w // merge) for _, h, w in grids])
    if len(selections) != len(videos):
        raise ConfigError(f"the selector returned {len(selections)} selections for {len(videos)} videos")

    device = hidden.device
    offsets = torch.tensor([0, *sizes[:-1]], device=device).cumsum(0)
    kept_units = torch.cat([s.keep_index.to(device) + offsets[b] for b, s in enumerate(selections)])
    patch_index = (kept_units[:, None] * unit + torch.arange(unit, device=device)).reshape(-1)
    hidden = hidden.index_select(0, patch_index)
    cos, sin = cos.index_select(0, patch_index), sin.index_select(0, patch_index)
    per_frame = torch.cat([s.frame_budget.to(device) for s in selections]) * unit
    per_frame = per_frame[per_frame > 0]
    cu_seqlens = F.pad(per_frame.cumsum(0, dtype=torch.int32), (1, 0))
    max_seqlen = get_max_seqlen(cu_seqlens, cfg)
    hidden = _run_blocks(visual, hidden, range(block + 1, depth), cu_seqlens, max_seqlen, (cos, sin), taps)

    kept = [s.num_kept for s in selections]
    merged = visual.merger(hidden)
    deepstack = []
    for level, idx in enumerate(visual.deepstack_visual_indexes):
        tap = taps[idx] if idx > block else taps[idx].index_select(0, patch_index)
        deepstack.append(torch.split(visual.deepstack_merger_list[level](tap), kept))
    return EarlyEncoding(torch.split(merged, kept), deepstack, selections, hidden, block)


# ----- the adapters: apply(model, VCastConfig(prune_at="vision:k")) -------------------------------
from vcast.models.base import ModelAdapter, register_adapter  # noqa: E402
from vcast.models.qwen_vl import Qwen3VLAdapter  # noqa: E402


@register_adapter
class Qwen3VLEarlyAdapter(Qwen3VLAdapter):
    """Qwen3-VL with ``prune_at="vision:k"``: the adapter's encoder step is :func:`encode_video_early`,
    which returns only the kept tokens (and their selections); the LLM side is the Qwen3-VL adapter's."""

    @classmethod
    def check_config(cls, config: MethodConfig) -> None:
        if config.vision_prune_block is None:
            raise ConfigError(
                "Qwen3VLEarlyAdapter serves prune_at='vision:k'; prune_at='llm' uses Qwen3VLAdapter"
            )
        if config.positions != "original":
            raise ConfigError(
                f"positions={config.positions!r} is for 1-D RoPE models; Qwen3-VL keeps the original "
                "(t, h, w) ids: use positions='original'"
            )

    def __init__(self, model, config: MethodConfig, processor=None) -> None:
        super().__init__(model, config, processor)
        self.block = int(config.vision_prune_block)
        depth = len(self.hook_module.visual.blocks)
        if self.block >= depth:
            raise ConfigError(
                f"prune_at={config.prune_at!r} is outside this vision tower's blocks 0..{depth - 1}"
            )
        _check_visual(self.hook_module.visual)
        self.selector = method_selector(config)

    def encode_videos(self, pixel_values_videos: torch.Tensor, video_grid_thw: torch.Tensor, **kwargs):
        """The early encoder step: kept tokens only, with ``vcast_selections`` set on the output."""
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        if video_grid_thw is None:
            raise ConfigError("early pruning needs video_grid_thw with pixel_values_videos")
        enc = encode_video_early(
            self.hook_module.visual, pixel_values_videos, video_grid_thw, self.block, self.selector
        )
        out = BaseModelOutputWithDeepstackFeatures(
            last_hidden_state=enc.last_hidden_state,
            pooler_output=enc.pooler_output,
            deepstack_features=enc.deepstack_features,
        )
        out.vcast_selections = enc.selections
        return out


@register_adapter
class EarlyPruningUnsupported(ModelAdapter):
    """Explains why ``prune_at="vision:k"`` does not apply to Qwen2-VL / Qwen2.5-VL (raises ConfigError
    on construction); ``prune_at="llm"`` configs pass over it to the family's own adapter."""

    model_types = ("qwen2_vl", "qwen2_5_vl")

    @classmethod
    def check_config(cls, config: MethodConfig) -> None:
        if config.vision_prune_block is None:
            raise ConfigError("not an early-pruning config")

    def __init__(self, model, config: MethodConfig, processor=None) -> None:
        check_early_pruning_supported(model.config.model_type)
        raise ConfigError(f"prune_at={config.prune_at!r} is not available for {model.config.model_type}")
