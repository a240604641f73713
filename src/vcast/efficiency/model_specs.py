"""Published architecture numbers of the Video LLMs vcast supports, as data (no weights).

Each :class:`ModelSpec` holds exactly what the analytic cost model (:mod:`vcast.efficiency.analytic`)
needs: the vision tower's shape and attention pattern, the projector / merger, and the LLM's shape
(dense or mixture-of-experts). Values are the ``config.json`` fields of the Hugging Face checkpoints
named in ``hf_id``.

Provenance (checked while writing this module, 2026):

* Qwen3-VL-4B and Qwen3-VL-32B: every field below matched config.json copies found in public
  repositories (text ``hidden_size/intermediate_size/num_hidden_layers/heads/kv_heads/head_dim``,
  vision ``depth/hidden_size/intermediate_size/out_hidden_size/deepstack_visual_indexes``).
* Qwen3-VL-8B: vision tower and text ``hidden_size/num_hidden_layers/heads/kv_heads`` matched;
  ``intermediate_size=12288`` is from our knowledge of the checkpoint (not re-verified).
* Qwen3-VL-2B: vision tower matched; the text fields are those of Qwen3-1.7B, which it uses
  (from our knowledge, not re-verified).
* Qwen3-VL-30B-A3B: the text MoE fields (48 layers, 2048 hidden, 32/4 heads, 128 experts, 8 active,
  ``moe_intermediate_size=768``) matched Qwen3-30B-A3B configs; its vision tower (27 x 1152,
  ``out_hidden_size=2048``) is from our knowledge.
* Qwen2.5-VL-7B: vision tower (32 x 1280, 3420 gated MLP, window 112, full-attention blocks
  7/15/23/31) and text (28 x 3584, 18944, 28/4 heads) matched.
* LLaVA-OneVision-7B (``llava-hf/llava-onevision-qwen2-7b-ov-hf``): SigLIP numbers are the defaults
  of transformers 5.23's ``LlavaOnevisionConfig`` (26 layers x 1152, 4304 MLP, 384 px, patch 14);
  the Qwen2-7B text fields are the same as Qwen2.5-VL-7B's LLM (matched).
* Qwen3.5-27B (``Qwen/Qwen3.5-27B``, verified): every field matched copies of its config.json in public
  repositories (at least two independent ones per text field; searched 2026 with vcast's code search):
  text 64 layers x 5120, 17408 MLP, 24 attention heads / 4 KV heads of 256 with an output gate, every
  4th layer softmax attention (16) and the others Gated DeltaNet (48) with 16 key / 48 value heads of
  128 and a 4-tap convolution, vocabulary 248320; vision 27 x 1152, 4304 MLP, 16 heads, patch 16,
  merge 2, temporal patch 2, ``out_hidden_size`` 5120, no deepstack. The cost model counts the Gated
  DeltaNet projections and convolution exactly and its recurrence as ``6 * dk * dv`` FLOPs per token
  and value head (the chunked kernel's exact count differs by its chunk bookkeeping).

Not here yet, and why (``vcast bench efficiency`` covers only what it can count faithfully): Gemma 4
(its 31B text config matched two public copies, but its vision tower, sliding-window layers with
separate global head sizes and shared K=V need a cost model of their own), GLM-4.6V and InternVL
(no copy of their config.json could be checked offline; their vision towers need their own kinds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vcast.errors import ConfigError

VisionKind = Literal["qwen3_vl", "qwen2_5_vl", "qwen2_vl", "siglip"]


@dataclass(frozen=True)
class VisionSpec:
    """The vision tower and its projector.

    Attributes:
        kind: ``"qwen3_vl"`` (per-frame full attention, non-gated GELU MLP, deepstack mergers),
            ``"qwen2_5_vl"`` (windowed attention except ``fullatt_blocks``, gated SiLU MLP),
            ``"qwen2_vl"`` (per-frame full attention) or ``"siglip"`` (LLaVA-OneVision: every frame
            is one 384 px image; 2x2 bilinear pooling after the projector).
        depth, hidden, intermediate, heads: transformer block shape.
        patch_size, temporal_patch_size, spatial_merge_size: Qwen patchification (SigLIP:
            temporal 1, merge 1; ``pool`` does the 2x2 reduction instead).
        out_hidden: the LLM width the projector maps to.
        deepstack: block indices tapped by deepstack mergers (Qwen3-VL).
        window_size: window side in pixels (Qwen2.5-VL), None for full per-frame attention.
        fullatt_blocks: blocks that attend over the whole frame despite ``window_size``.
        image_size: SigLIP's fixed input side in pixels (frames are resized to it).
        pool: SigLIP's post-projector pooling factor per side (LLaVA-OneVision video: 2).
        in_channels: image channels.
    """

    kind: VisionKind
    depth: int
    hidden: int
    intermediate: int
    heads: int
    patch_size: int
    out_hidden: int
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    deepstack: tuple[int, ...] = ()
    window_size: int | None = None
    fullatt_blocks: tuple[int, ...] = ()
    image_size: int | None = None
    pool: int = 1
    in_channels: int = 3

    @property
    def gated_mlp(self) -> bool:
        """True when the block MLP has gate/up/down projections (Qwen2.5-VL)."""
        return self.kind == "qwen2_5_vl"

    @property
    def merge_unit(self) -> int:
        """Patches per post-merger token (``spatial_merge_size**2``)."""
        return self.spatial_merge_size**2


@dataclass(frozen=True)
class TextSpec:
    """The language model.

    Attributes:
        layers, hidden, heads, kv_heads, head_dim: decoder shape (GQA when ``kv_heads < heads``).
        intermediate: dense gated-MLP width (unused when ``num_experts > 0``).
        vocab: vocabulary size (LM head; prefill computes logits for the last position only).
        num_experts, experts_per_token, moe_intermediate: MoE layers (0 experts: dense). Only the
            ``experts_per_token`` active experts are counted, plus the router.
        linear_layers: layers whose token mixer is linear attention (Qwen3.5's Gated DeltaNet) instead of
            softmax attention; the other ``layers - linear_layers`` attend over the whole prompt and alone
            hold a KV cache (a linear layer's state has a fixed size, whatever the prompt length).
        linear_key_heads, linear_value_heads, linear_head_dim: their key / value heads and head size.
        linear_conv_kernel: the depthwise causal convolution over q, k, v.
        attn_output_gate: the attention layers' ``q_proj`` also produces a sigmoid output gate (Qwen3.5).
        shared_expert_intermediate: a shared expert next to the routed ones (Qwen3.5-MoE), with its gate.
    """

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate: int = 0
    linear_layers: int = 0
    linear_key_heads: int = 0
    linear_value_heads: int = 0
    linear_head_dim: int = 0
    linear_conv_kernel: int = 4
    attn_output_gate: bool = False
    shared_expert_intermediate: int = 0

    @property
    def attention_layers(self) -> int:
        """Layers with softmax attention (and a KV cache)."""
        return self.layers - self.linear_layers


@dataclass(frozen=True)
class ModelSpec:
    """A Video LLM as the cost model sees it.

    Attributes:
        name: short key, e.g. ``"qwen3-vl-8b"``.
        hf_id: the checkpoint the numbers come from.
        vision, text: the two towers.
        text_tokens_per_group: prompt tokens the processor adds per temporal group (Qwen3-VL:
            ``<t seconds>`` timestamp text plus vision start/end, about 8). Never pruned.
        extra_video_tokens: non-prunable tokens added once per video (Qwen2/2.5-VL: vision
            start/end; LLaVA-OneVision: the trailing ``image_newline``).
        early_pruning: None if ``prune_at="vision:k"`` is sound for this tower, else why not.
    """

    name: str
    hf_id: str
    vision: VisionSpec
    text: TextSpec
    text_tokens_per_group: int = 0
    extra_video_tokens: int = 2
    early_pruning: str | None = None
    notes: dict[str, Any] = field(default_factory=dict, compare=False)


_WINDOWED = (
    "Qwen2.5-VL's vision blocks attend inside 112 px windows (all but blocks {blocks}); dropping merge "
    "groups changes the window partition and the windowed blocks' outputs, so early pruning would not be "
    "the model's computation. Use prune_at='llm'."
)
_SIGLIP = (
    "LLaVA-OneVision's SigLIP tower attends over whole 384 px frames and its 2x2 bilinear pooling runs "
    "after the projector, so a pooled token has no fixed group of patches to drop before the tower "
    "finishes. Use prune_at='llm'."
)

_QWEN3_SMALL_VISION = dict(
    depth=24, hidden=1024, intermediate=4096, heads=16, patch_size=16, deepstack=(5, 11, 17)
)
_QWEN3_LARGE_VISION = dict(
    depth=27, hidden=1152, intermediate=4304, heads=16, patch_size=16, deepstack=(8, 16, 24)
)
_QWEN2_7B_TEXT = TextSpec(
    layers=28, hidden=3584, intermediate=18944, heads=28, kv_heads=4, head_dim=128, vocab=152064
)


def _qwen3(name: str, hf_id: str, vision: dict, text: TextSpec) -> ModelSpec:
    return ModelSpec(
        name=name,
        hf_id=hf_id,
        vision=VisionSpec(kind="qwen3_vl", out_hidden=text.hidden, **vision),
        text=text,
        text_tokens_per_group=8,
        extra_video_tokens=0,
    )


MODEL_SPECS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        _qwen3(
            "qwen3-vl-2b",
            "Qwen/Qwen3-VL-2B-Instruct",
            _QWEN3_SMALL_VISION,
            TextSpec(
                layers=28, hidden=2048, intermediate=6144, heads=16, kv_heads=8, head_dim=128, vocab=151936
            ),
        ),
        _qwen3(
            "qwen3-vl-4b",
            "Qwen/Qwen3-VL-4B-Instruct",
            _QWEN3_SMALL_VISION,
            TextSpec(
                layers=36, hidden=2560, intermediate=9728, heads=32, kv_heads=8, head_dim=128, vocab=151936
            ),
        ),
        _qwen3(
            "qwen3-vl-8b",
            "Qwen/Qwen3-VL-8B-Instruct",
            _QWEN3_LARGE_VISION,
            TextSpec(
                layers=36, hidden=4096, intermediate=12288, heads=32, kv_heads=8, head_dim=128, vocab=151936
            ),
        ),
        _qwen3(
            "qwen3-vl-32b",
            "Qwen/Qwen3-VL-32B-Instruct",
            _QWEN3_LARGE_VISION,
            TextSpec(
                layers=64, hidden=5120, intermediate=25600, heads=64, kv_heads=8, head_dim=128, vocab=151936
            ),
        ),
        _qwen3(
            "qwen3-vl-30b-a3b",
            "Qwen/Qwen3-VL-30B-A3B-Instruct",
            _QWEN3_LARGE_VISION,
            TextSpec(
                layers=48,
                hidden=2048,
                intermediate=6144,
                heads=32,
                kv_heads=4,
                head_dim=128,
                vocab=151936,
                num_experts=128,
                experts_per_token=8,
                moe_intermediate=768,
            ),
        ),
        ModelSpec(
            name="qwen2.5-vl-7b",
            hf_id="Qwen/Qwen2.5-VL-7B-Instruct",
            vision=VisionSpec(
                kind="qwen2_5_vl",
                depth=32,
                hidden=1280,
                intermediate=3420,
                heads=16,
                patch_size=14,
                out_hidden=3584,
                window_size=112,
                fullatt_blocks=(7, 15, 23, 31),
            ),
            text=_QWEN2_7B_TEXT,
            early_pruning=_WINDOWED.format(blocks="7, 15, 23, 31"),
        ),
        ModelSpec(
            name="llava-ov-7b",
            hf_id="llava-hf/llava-onevision-qwen2-7b-ov-hf",
            vision=VisionSpec(
                kind="siglip",
                depth=26,
                hidden=1152,
                intermediate=4304,
                heads=16,
                patch_size=14,
                out_hidden=3584,
                temporal_patch_size=1,
                spatial_merge_size=1,
                image_size=384,
                pool=2,
            ),
            text=TextSpec(
                layers=28, hidden=3584, intermediate=18944, heads=28, kv_heads=4, head_dim=128, vocab=152128
            ),
            extra_video_tokens=1,
            early_pruning=_SIGLIP,
        ),
        ModelSpec(
            name="qwen3.5-27b",
            hf_id="Qwen/Qwen3.5-27B",
            vision=VisionSpec(kind="qwen3_vl", out_hidden=5120, depth=27, hidden=1152, intermediate=4304, heads=16,
                              patch_size=16),
            text=TextSpec(layers=64, hidden=5120, intermediate=17408, heads=24, kv_heads=4, head_dim=256,
                          vocab=248320, linear_layers=48, linear_key_heads=16, linear_value_heads=48,
                          linear_head_dim=128, attn_output_gate=True),
            text_tokens_per_group=8,
            extra_video_tokens=0,
            early_pruning="early pruning is implemented and verified for Qwen3-VL only; use prune_at='llm'",
            notes={"verified": True},
        ),
    )
}


def get_spec(name: str | ModelSpec) -> ModelSpec:
    """The :class:`ModelSpec` called ``name`` (a spec passes through); unknown names raise ConfigError."""
    if isinstance(name, ModelSpec):
        return name
    try:
        return MODEL_SPECS[name.lower()]
    except (KeyError, AttributeError):
        raise ConfigError(f"no model spec named {name!r}; known: {sorted(MODEL_SPECS)}") from None


def spec_from_hf_config(config: Any, name: str | None = None) -> ModelSpec:
    """Build a :class:`ModelSpec` from a transformers config object (Qwen3-VL, Qwen3-VL-MoE,
    Qwen2.5-VL, Qwen2-VL or LLaVA-OneVision), e.g. ``model.config`` of a loaded or random model."""
    mt = getattr(config, "model_type", None)
    tc = getattr(config, "text_config", None)
    vc = getattr(config, "vision_config", None)
    if tc is None or vc is None:
        raise ConfigError(f"config of type {mt!r} has no text_config/vision_config; pass a Video LLM config")
    experts = int(getattr(tc, "num_experts", 0) or 0)
    text = TextSpec(
        layers=tc.num_hidden_layers,
        hidden=tc.hidden_size,
        intermediate=int(getattr(tc, "intermediate_size", 0) or 0),
        heads=tc.num_attention_heads,
        kv_heads=tc.num_key_value_heads,
        head_dim=getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads,
        vocab=tc.vocab_size,
        num_experts=experts,
        experts_per_token=int(getattr(tc, "num_experts_per_tok", 0) or 0) if experts else 0,
        moe_intermediate=int(getattr(tc, "moe_intermediate_size", 0) or 0) if experts else 0,
    )
    name = name or f"{mt}-custom"
    if mt in ("qwen3_5", "qwen3_5_moe"):  # hybrid LLM: layer_types says which layers are Gated DeltaNet
        text = TextSpec(**{**text.__dict__, "linear_layers": list(tc.layer_types).count("linear_attention"),
                           "linear_key_heads": tc.linear_num_key_heads, "linear_value_heads": tc.linear_num_value_heads,
                           "linear_head_dim": tc.linear_key_head_dim, "linear_conv_kernel": tc.linear_conv_kernel_dim,
                           "attn_output_gate": True,
                           "shared_expert_intermediate": int(getattr(tc, "shared_expert_intermediate_size", 0) or 0)})
        if tc.linear_key_head_dim != tc.linear_value_head_dim:
            raise ConfigError("the cost model takes equal Gated DeltaNet key and value head sizes")
    if mt in ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen3_5", "qwen3_5_moe"):  # shared vision field names
        qwen_vision = dict(
            depth=vc.depth,
            hidden=vc.hidden_size,
            intermediate=vc.intermediate_size,
            heads=vc.num_heads,
            patch_size=vc.patch_size,
            out_hidden=vc.out_hidden_size,
            temporal_patch_size=vc.temporal_patch_size,
            spatial_merge_size=vc.spatial_merge_size,
            in_channels=vc.in_channels,
        )
    if mt in ("qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"):
        vision = VisionSpec(kind="qwen3_vl", deepstack=tuple(getattr(vc, "deepstack_visual_indexes", ()) or ()),
                            **qwen_vision)
        return ModelSpec(
            name=name, hf_id="", vision=vision, text=text, text_tokens_per_group=8, extra_video_tokens=0
        )
    if mt == "qwen2_5_vl":
        vision = VisionSpec(kind="qwen2_5_vl", window_size=vc.window_size,
                            fullatt_blocks=tuple(vc.fullatt_block_indexes), **qwen_vision)
        blocks = ", ".join(map(str, vision.fullatt_blocks))
        return ModelSpec(
            name=name, hf_id="", vision=vision, text=text, early_pruning=_WINDOWED.format(blocks=blocks)
        )
    if mt == "qwen2_vl":
        vision = VisionSpec(
            kind="qwen2_vl",
            depth=vc.depth,
            hidden=vc.embed_dim,
            intermediate=int(vc.embed_dim * vc.mlp_ratio),
            heads=vc.num_heads,
            patch_size=vc.patch_size,
            out_hidden=vc.hidden_size,
            temporal_patch_size=vc.temporal_patch_size,
            spatial_merge_size=vc.spatial_merge_size,
            in_channels=vc.in_channels,
        )
        return ModelSpec(
            name=name,
            hf_id="",
            vision=vision,
            text=text,
            early_pruning="early pruning is implemented for Qwen3-VL only; use prune_at='llm'",
        )
    if mt == "llava_onevision":
        vision = VisionSpec(
            kind="siglip",
            depth=vc.num_hidden_layers,
            hidden=vc.hidden_size,
            intermediate=vc.intermediate_size,
            heads=vc.num_attention_heads,
            patch_size=vc.patch_size,
            out_hidden=tc.hidden_size,
            temporal_patch_size=1,
            spatial_merge_size=1,
            image_size=vc.image_size,
            pool=2,
            in_channels=vc.num_channels,
        )
        return ModelSpec(
            name=name, hf_id="", vision=vision, text=text, extra_video_tokens=1, early_pruning=_SIGLIP
        )
    raise ConfigError(
        f"no cost model for model_type {mt!r}; supported: qwen3_vl, qwen3_vl_moe, qwen3_5, qwen3_5_moe, "
        "qwen2_5_vl, qwen2_vl, llava_onevision"
    )
