"""Where the proxy's answer looks: the attention of the last prompt position, read during training.

:class:`AnswerAttention` hooks the self-attention modules of chosen LLM layers of one model instance
and recomputes, from the inputs each module receives, the attention probabilities of the LAST query
position over the whole sequence (``FloatTensor[B, heads, L]``): the position whose logits give the
one-token answer. It is what ``output_attentions`` with eager attention returns for that row (tested),
at the cost of one query instead of L, and it leaves the sdpa forward untouched.

Training uses it for the evidence loss of :mod:`vcast.proxy.train`: the share of some heads'
attention that falls on the video tokens showing the question's evidence. A model learning from the
answer alone first has to find one token among ~200 whose attention starts near uniform (1/200), a
plateau runs sat on for thousands of steps; this loss lets the look-up learn directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class AnswerAttention:
    """Last-position attention probabilities of ``layers`` of a Qwen3-VL LLM, per forward call.

    Use as a context manager (or call :meth:`remove`); after each forward, :attr:`probs` holds one
    ``FloatTensor[B, heads, L]`` per hooked layer, in layer order (reset by :meth:`clear`).
    """

    def __init__(self, model, layers: Sequence[int]) -> None:
        text = model.model.language_model
        self.probs: list[torch.Tensor] = []
        self._handles = [text.layers[i].self_attn.register_forward_hook(self._hook, with_kwargs=True)
                         for i in layers]

    def _hook(self, module, args, kwargs, output) -> None:
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]  # [B, L, C]
        cos, sin = kwargs["position_embeddings"]  # [B, L, d]
        mask = kwargs.get("attention_mask")
        b, length, _ = hidden.shape
        d = module.head_dim
        q = module.q_norm(module.q_proj(hidden[:, -1:]).view(b, 1, -1, d)).transpose(1, 2)  # [B, H, 1, d]
        k = module.k_norm(module.k_proj(hidden).view(b, length, -1, d)).transpose(1, 2)  # [B, Hkv, L, d]
        q = q * cos[:, None, -1:] + _rotate_half(q) * sin[:, None, -1:]
        k = k * cos[:, None] + _rotate_half(k) * sin[:, None]
        k = k.repeat_interleave(module.num_key_value_groups, dim=1)  # [B, H, L, d]
        logits = (q @ k.transpose(-1, -2)).squeeze(2).float() * module.scaling  # [B, H, L]
        if mask is not None:
            last = mask[:, :, -1, -length:]  # [B, 1 or H, L]
            logits = logits.masked_fill(~last, float("-inf")) if last.dtype == torch.bool else logits + last.float()
        self.probs.append(logits.softmax(-1))

    def clear(self) -> None:
        """Forget the probabilities of earlier forwards."""
        self.probs = []

    def remove(self) -> None:
        """Remove the hooks (safe to call twice)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> AnswerAttention:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
