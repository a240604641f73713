"""Training-time speed-ups of the proxy's vision tower, set on one model instance and undone before saving.

- :class:`PatchMatmul`: the patch embedding (a ``Conv3d`` whose kernel equals its stride, i.e. a linear
  map of each flattened patch) evaluated as the equivalent matrix product; :func:`swap_patch_conv`
  puts it in (or the real ``Conv3d`` back) with the same parameters.
- :func:`chunk_vision_attention`: every temporal patch of a batch in one batched
  ``scaled_dot_product_attention`` call instead of transformers' per-chunk loop (all chunks have the
  same length; same result, tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class PatchMatmul(torch.nn.Conv3d):
    """A ``Conv3d`` with kernel == stride evaluated as ``linear(flat_patch, weight.flatten(1))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x.flatten(1), self.weight.flatten(1), self.bias)
        return out.view(x.shape[0], -1, 1, 1, 1)


def swap_patch_conv(model, cls: type[torch.nn.Conv3d]) -> None:
    """Replace the vision tower's patch embedding by a ``cls`` module sharing its parameters
    (:class:`PatchMatmul` for training, ``torch.nn.Conv3d`` to restore); this instance only."""
    embed = model.model.visual.patch_embed
    old = embed.proj
    new = cls(old.in_channels, old.out_channels, old.kernel_size, stride=old.stride, bias=old.bias is not None,
              device="meta")
    new.weight, new.bias = old.weight, old.bias
    embed.proj = new


def _chunked_attention_forward(self, hidden_states, cu_seqlens, position_embeddings=None, **kwargs):
    """``Qwen3VLVisionAttention.forward`` with every equal-length chunk in one batched sdpa call.

    ``hidden_states``: ``[S, C]`` patches of all temporal patches back to back; ``cu_seqlens``:
    ``int[n+1]`` chunk boundaries (each chunk attends only within itself). Falls back to the
    instance's original forward when the chunks differ in length.
    """
    from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    length = int(lengths[0])
    if not bool((lengths == length).all()):
        return type(self).forward(self, hidden_states, cu_seqlens, position_embeddings=position_embeddings, **kwargs)
    seq = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(seq, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    cos, sin = position_embeddings
    q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    n = seq // length
    q, k, v = (t.reshape(n, length, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))  # [n, H, L, D]
    out = F.scaled_dot_product_attention(q, k, v, scale=self.scaling)
    return self.proj(out.transpose(1, 2).reshape(seq, -1))


def chunk_vision_attention(model, on: bool) -> None:
    """Swap (``on``) or restore the vision blocks' attention forward on this model instance only."""
    for block in model.model.visual.blocks:
        if on:
            block.attn.forward = _chunked_attention_forward.__get__(block.attn)
        else:
            block.attn.__dict__.pop("forward", None)
