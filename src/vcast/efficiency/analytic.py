"""Analytic prefill cost of one video clip: FLOPs of the vision tower and the LLM, and KV-cache bytes.

What is counted (2 FLOPs per multiply-accumulate), the same set of operations that
``torch.utils.flop_counter.FlopCounterMode`` counts (tested against it on a tiny model):

* every matrix product: patch-embedding convolution, q/k/v/o projections, MLPs (gated or not; for
  MoE the router plus the ``experts_per_token`` active experts), patch mergers / deepstack mergers /
  the LLaVA projector, and the LM head on the last position (``generate`` computes prefill logits
  for one position only);
* attention's two quadratic products (``QK^T`` and ``AV``): ``4 * s^2 * heads * head_dim`` per
  attention segment of length ``s``. Vision attention is per segment (Qwen: one segment per temporal
  group, or per 112 px window in Qwen2.5-VL's windowed blocks; SigLIP: per frame). LLM attention is
  causal; ``attention="causal"`` counts the ``L(L+1)/2`` unmasked pairs (what FlashAttention-style
  kernels compute), ``"dense"`` counts all ``L^2`` (what the flop counter and masked SDPA count).

Not counted: norms, activations, softmax, RoPE, residual adds, the selection itself (a few ``T*N*D``
passes, < 0.01% here) and LLaVA's bilinear pooling. Frames are resized as Qwen's processors do
(sides rounded to a multiple of ``patch * merge``; pixel limits not applied), SigLIP frames to
384x384. Early pruning (``prune_at="vision:k"``) assumes the kept tokens are spread evenly over the
temporal groups unless ``frame_budget`` is given (even spreading minimises the per-group
attention term; V-CAST's uneven budgets raise it slightly).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from vcast.core.budget import total_budget
from vcast.efficiency.model_specs import ModelSpec, VisionSpec, get_spec
from vcast.errors import ConfigError

_PRUNE_AT = re.compile(r"^(llm|vision:(\d+))$")


@dataclass(frozen=True)
class VideoGeometry:
    """Token layout of one clip.

    Attributes:
        groups: temporal groups T (Qwen: ``ceil(frames / temporal_patch_size)``; SigLIP: frames).
        grid_h, grid_w: patches per side of one group.
        token_h, token_w: LLM tokens per side of one group (after merger / pooling).
    """

    groups: int
    grid_h: int
    grid_w: int
    token_h: int
    token_w: int

    @property
    def tokens_per_group(self) -> int:
        """N, LLM tokens per group."""
        return self.token_h * self.token_w

    @property
    def patches_per_group(self) -> int:
        return self.grid_h * self.grid_w

    @property
    def visual_tokens(self) -> int:
        return self.groups * self.tokens_per_group


def video_geometry(spec: ModelSpec | str, frames: int, height: int, width: int) -> VideoGeometry:
    """The :class:`VideoGeometry` of a ``frames x height x width`` clip for ``spec``."""
    v = get_spec(spec).vision
    for name, val in (("frames", frames), ("height", height), ("width", width)):
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ConfigError(f"{name} must be a positive int, got {val!r}")
    if v.kind == "siglip":
        side = v.image_size // v.patch_size
        pooled = math.ceil(side / v.pool)
        return VideoGeometry(frames, side, side, pooled, pooled)
    factor = v.patch_size * v.spatial_merge_size
    h = max(factor, round(height / factor) * factor) // v.patch_size
    w = max(factor, round(width / factor) * factor) // v.patch_size
    m = v.spatial_merge_size
    return VideoGeometry(math.ceil(frames / v.temporal_patch_size), h, w, h // m, w // m)


def parse_prune_at(prune_at: str, vision: VisionSpec) -> int | None:
    """The vision block index of ``"vision:k"`` (None for ``"llm"``), checked against the depth."""
    m = _PRUNE_AT.match(prune_at) if isinstance(prune_at, str) else None
    if m is None:
        raise ConfigError(f"prune_at must be 'llm' or 'vision:<block index>', got {prune_at!r}")
    if m.group(2) is None:
        return None
    k = int(m.group(2))
    if not 0 <= k < vision.depth:
        raise ConfigError(f"prune_at='vision:{k}' is outside the vision tower's blocks 0..{vision.depth - 1}")
    return k


def default_vision_block(spec: ModelSpec | str) -> int:
    """The default early-pruning block: the last block of the first quarter of the tower,
    ``k = round(depth / 4) - 1`` (Qwen3-VL-8B: 6 of 0..26; -2B: 5 of 0..23), so the selection sees
    the hidden states after blocks 0..k."""
    return max(0, round(get_spec(spec).vision.depth / 4) - 1)


def _even_split(total: int, parts: int) -> list[int]:
    base, rem = divmod(total, parts)
    return [base + (1 if i < rem else 0) for i in range(parts)]


def _window_sq_sum(v: VisionSpec, g: VideoGeometry) -> int:
    """Sum of squared window lengths (in patches) of one group under Qwen2.5-VL windowing."""
    side = v.window_size // v.spatial_merge_size // v.patch_size
    hm, wm = g.grid_h // v.spatial_merge_size, g.grid_w // v.spatial_merge_size
    rows = [min(side, hm - i) for i in range(0, hm, side)]
    cols = [min(side, wm - j) for j in range(0, wm, side)]
    return sum((a * b * v.merge_unit) ** 2 for a in rows for b in cols)


def vision_flops(spec: ModelSpec, g: VideoGeometry, kept_per_group: list[int] | None, k: int | None) -> dict:
    """Vision-tower FLOPs, split into patch embedding, block projections/MLPs, block attention and
    mergers/projector. ``kept_per_group`` (tokens kept per group) and ``k`` describe early pruning;
    None for the full tower."""
    v = spec.vision
    d = v.hidden
    s_full = g.groups * g.patches_per_group
    per_token_linear = 2 * (4 * d * d + (3 if v.gated_mlp else 2) * d * v.intermediate)
    full_sq = g.groups * g.patches_per_group**2
    win_sq = g.groups * _window_sq_sum(v, g) if v.window_size else full_sq
    sq_per_block = [
        win_sq if (v.window_size and b not in v.fullatt_blocks) else full_sq for b in range(v.depth)
    ]
    tokens_in_block = [s_full] * v.depth
    merged_out = g.visual_tokens
    if k is not None and kept_per_group is not None:
        kept_patches = [n * v.merge_unit for n in kept_per_group]
        for b in range(k + 1, v.depth):
            tokens_in_block[b] = sum(kept_patches)
            sq_per_block[b] = sum(p * p for p in kept_patches)
        merged_out = sum(kept_per_group)
    patch_embed = 2 * s_full * v.in_channels * v.temporal_patch_size * v.patch_size**2 * d
    linear = sum(t * per_token_linear for t in tokens_in_block)
    attention = sum(4 * sq * d for sq in sq_per_block)
    if v.kind == "siglip":  # projector on every patch, before pooling
        mergers = 2 * s_full * (d * v.out_hidden + v.out_hidden * v.out_hidden)
    else:
        wide = d * v.merge_unit
        mergers = (1 + len(v.deepstack)) * merged_out * 2 * (wide * wide + wide * v.out_hidden)
    total = patch_embed + linear + attention + mergers
    return {
        "patch_embed": patch_embed,
        "blocks_linear": linear,
        "blocks_attention": attention,
        "mergers": mergers,
        "total": total,
    }


def llm_prefill_flops(spec: ModelSpec, tokens: int, attention: Literal["causal", "dense"] = "causal") -> dict:
    """LLM prefill FLOPs for a ``tokens``-long prompt: projections + MLP (or router + active experts),
    attention products (softmax layers) or the linear-attention recurrence (Gated DeltaNet layers) and
    the LM head on the last position."""
    t = spec.text
    qo = t.heads * t.head_dim
    kv = t.kv_heads * t.head_dim
    mlp = (2 * (t.hidden * t.num_experts + t.experts_per_token * 3 * t.hidden * t.moe_intermediate)
           if t.num_experts else 2 * 3 * t.hidden * t.intermediate)
    if t.shared_expert_intermediate:  # Qwen3.5-MoE: a shared expert and its sigmoid gate
        mlp += 2 * (3 * t.hidden * t.shared_expert_intermediate + t.hidden)
    attn_per_token = 2 * ((2 if t.attn_output_gate else 1) * t.hidden * qo + t.hidden * qo + 2 * t.hidden * kv) + mlp
    if attention not in ("causal", "dense"):
        raise ConfigError(f"attention must be 'causal' or 'dense', got {attention!r}")
    pairs = tokens * (tokens + 1) // 2 if attention == "causal" else tokens * tokens
    linear = t.attention_layers * tokens * attn_per_token
    attn = t.attention_layers * 4 * pairs * qo
    decode = t.attention_layers * (attn_per_token + 4 * tokens * qo)
    if t.linear_layers:  # Gated DeltaNet: q, k, v (+ conv), z, a, b and out projections; O(tokens) recurrence
        dk, dv = t.linear_key_heads * t.linear_head_dim, t.linear_value_heads * t.linear_head_dim
        conv_dim = 2 * dk + dv
        per_token = (2 * t.hidden * (conv_dim + dv + 2 * t.linear_value_heads) + 2 * dv * t.hidden
                     + 2 * conv_dim * t.linear_conv_kernel + mlp)
        recurrence = 6 * t.linear_value_heads * t.linear_head_dim**2
        conv_padding = 2 * conv_dim * t.linear_conv_kernel * (t.linear_conv_kernel - 1)  # the causal pad's outputs
        linear += t.linear_layers * (tokens * per_token + conv_padding)
        attn += t.linear_layers * tokens * recurrence
        decode += t.linear_layers * (per_token + recurrence)
    lm_head = 2 * t.hidden * t.vocab
    return {
        "linear": linear,
        "attention": attn,
        "lm_head": lm_head,
        "total": linear + attn + lm_head,
        "decode_per_token": decode + lm_head,
    }


def prefill_cost(
    spec: ModelSpec | str,
    frames: int = 32,
    height: int = 448,
    width: int = 448,
    retain_ratio: float = 1.0,
    prune_at: str = "llm",
    *,
    kept_tokens: int | None = None,
    frame_budget: list[int] | None = None,
    prompt_tokens: int = 64,
    attention: Literal["causal", "dense"] = "causal",
    kv_bytes_per_element: int = 2,
) -> dict[str, Any]:
    """Prefill cost of one clip through ``spec`` with a fraction of its visual tokens kept.

    Args:
        spec: a :class:`ModelSpec` or its name (``vcast.efficiency.MODEL_SPECS``).
        frames, height, width: the sampled clip (frames before temporal patching).
        retain_ratio: fraction of visual tokens reaching the LLM, in (0, 1]; kept count
            ``round(T*N*r)`` as V-CAST's budget (at least one per group) unless ``kept_tokens``.
        prune_at: ``"llm"`` (after the vision tower) or ``"vision:k"`` (after vision block k:
            blocks k+1.. and the mergers see only the kept merge groups). Raises ConfigError where
            early pruning is not sound (``spec.early_pruning``).
        kept_tokens: exact kept count (e.g. from a method's selection), overrides the ratio.
        frame_budget: kept tokens per temporal group (sums to the kept count); even split if None.
        prompt_tokens: text tokens outside the video (system prompt, question).
        attention: LLM attention count, see the module docstring.
        kv_bytes_per_element: 2 for bf16/fp16 caches.

    Returns:
        dict with ``vision_flops``, ``llm_flops``, ``total_flops``, ``kv_cache_bytes``,
        ``decode_flops_per_token``, token counts (``visual_tokens``, ``kept_visual_tokens``,
        ``llm_tokens``, ``groups``, ``tokens_per_group``) and ``vision_breakdown`` /
        ``llm_breakdown`` dicts.
    """
    spec = get_spec(spec)
    if (
        isinstance(retain_ratio, bool)
        or not isinstance(retain_ratio, (int, float))
        or not 0 < retain_ratio <= 1
    ):
        raise ConfigError(f"retain_ratio must be in (0, 1], got {retain_ratio!r}")
    k = parse_prune_at(prune_at, spec.vision)
    if k is not None and spec.early_pruning:
        raise ConfigError(f"prune_at={prune_at!r} is not available for {spec.name}: {spec.early_pruning}")
    g = video_geometry(spec, frames, height, width)
    kept = (
        total_budget(g.groups, g.tokens_per_group, retain_ratio) if kept_tokens is None else int(kept_tokens)
    )
    if not 1 <= kept <= g.visual_tokens:
        raise ConfigError(f"kept_tokens must be in [1, {g.visual_tokens}], got {kept}")
    if frame_budget is not None:
        per_group = [int(n) for n in frame_budget]
        if (
            len(per_group) != g.groups
            or sum(per_group) != kept
            or not all(0 <= n <= g.tokens_per_group for n in per_group)
        ):
            raise ConfigError(
                f"frame_budget must have {g.groups} entries in [0, {g.tokens_per_group}] summing to {kept}"
            )
    else:
        per_group = _even_split(kept, g.groups)
    vis = vision_flops(spec, g, per_group if k is not None else None, k)
    text = prompt_tokens + g.groups * spec.text_tokens_per_group + spec.extra_video_tokens
    llm_tokens = text + kept
    llm = llm_prefill_flops(spec, llm_tokens, attention)
    t = spec.text
    return {
        "model": spec.name,
        "frames": frames,
        "height": height,
        "width": width,
        "retain_ratio": retain_ratio,
        "prune_at": prune_at,
        "groups": g.groups,
        "tokens_per_group": g.tokens_per_group,
        "visual_tokens": g.visual_tokens,
        "kept_visual_tokens": kept,
        "text_tokens": text,
        "llm_tokens": llm_tokens,
        "vision_flops": vis["total"],
        "llm_flops": llm["total"],
        "total_flops": vis["total"] + llm["total"],
        "kv_cache_bytes": 2 * t.attention_layers * t.kv_heads * t.head_dim * llm_tokens * kv_bytes_per_element,
        "decode_flops_per_token": llm["decode_per_token"],
        "vision_breakdown": vis,
        "llm_breakdown": llm,
    }


def cost_ratios(pruned: dict, vanilla: dict) -> dict[str, float]:
    """Pruned / vanilla ratios of two :func:`prefill_cost` results (the ``--json`` analytic keys)."""
    return {
        "vision_flops_ratio": pruned["vision_flops"] / vanilla["vision_flops"],
        "llm_prefill_flops_ratio": pruned["llm_flops"] / vanilla["llm_flops"],
        "total_prefill_flops_ratio": pruned["total_flops"] / vanilla["total_flops"],
        "kv_cache_ratio": pruned["kv_cache_bytes"] / vanilla["kv_cache_bytes"],
    }


def compare(
    spec: ModelSpec | str,
    frames: int = 32,
    height: int = 448,
    width: int = 448,
    retain_ratio: float = 0.25,
    prune_at: str = "llm",
    **kwargs: Any,
) -> dict[str, Any]:
    """``prefill_cost`` of the pruned clip, with its ratios to the unpruned clip added (keys of
    :func:`cost_ratios`) and the vanilla result under ``"vanilla"``."""
    base_kwargs = {key: v for key, v in kwargs.items() if key not in ("kept_tokens", "frame_budget")}
    vanilla = prefill_cost(spec, frames, height, width, 1.0, "llm", **base_kwargs)
    pruned = prefill_cost(spec, frames, height, width, retain_ratio, prune_at, **kwargs)
    return {**pruned, **cost_ratios(pruned, vanilla), "vanilla": vanilla}
