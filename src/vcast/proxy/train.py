"""Train the proxy Qwen3-VL from scratch on generated video questions (CPU, deterministic).

The committed weights in ``vcast/data/proxy/`` were produced by the command recorded in their
``train_log.json`` (``command``, with the weights' ``sha256``); rerunning it on the same torch build
and thread count rebuilds the same bytes (tested on a short run in a subprocess).

Training: AdamW, linear warm-up then cosine decay, cross-entropy on the one answer token (full
vocabulary). Peak rate 3e-3 for the LLM and the heads (``lr``) and for the vision tower
(``vision_lr``); measured alternatives, each of which left whole families unlearned within the step
budget: 1.5e-3 everywhere (no where / motion), the vision tower alone at 1.5e-3 (no needle / shake /
order). Training clips cycle through :data:`TRAIN_FAMILIES`, the position questions twice. Each step
runs one forward per clip length (the 64-frame ``late`` clips apart from the 16-frame ones, so short
prompts are not padded to the long ones). A
curriculum eases the start: early clips are partly drawn on flat backgrounds (80% at step 0, none
from 30% of the steps on), where the events stand out, then only photos (recoloured and turned, see
``tasks._recolour``). Two auxiliary losses (training only, their heads are not saved)
speed learning up: a linear head reads each LLM-bound video token from the vision tower and predicts
what the generator drew there (``Clip.labels``: which shape or a flash, the shape's motion, whether
the token's temporal patch holds a cut, which quadrant it lies in); a second one reads the same
tokens after the LLM's first layer and predicts whether the object there was the clip's earliest
(``Clip.labels`` ``first``), the look-back the ``order`` questions need. The saved model is the plain
``Qwen3VLForConditionalGeneration``. Step ``s`` uses train clips ``s*B .. s*B+B-1`` of the given
seed, so every run with the same seed, steps, batch size, torch version and thread count produces
the same weights. A background thread renders and encodes the next batch while the current one trains.

Optional token dropout (``drop_steps``, off by default): on that share of steps every clip keeps only
a random fraction of each temporal patch's video tokens (objects first), through vcast's own adapter.
Measured at ``drop_steps=0.5``: accuracy under pruning hardly fell any more (96-97% retention at ratio
0.1), but the unpruned model lost 9 points and every method scored alike, so the committed model is
trained without it.

For speed the vision tower's attention runs every temporal patch of the batch in one batched
``scaled_dot_product_attention`` call instead of transformers' per-chunk loop (all chunks have the
same length; same result, see :func:`_chunk_vision_attention`), and the vision tower's patch embedding (a ``Conv3d`` whose kernel equals its stride, i.e. a
linear map of each flattened patch) runs as the equivalent matrix product during training: the
module is swapped on this model instance only, keeps the same parameters, and is restored before
the weights are saved.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vcast.core.selection import Selection
from vcast.errors import ConfigError
from vcast.methods._common import make_selection, mask_to_index
from vcast.proxy import tasks
from vcast.proxy.model import answer_ids, build_model, build_processor, encode

# Classes of the per-token auxiliary targets read from the vision tower's output: ``Clip.labels``
# what (none, 4 shapes, flash), motion (none, 4 directions), cut (no, yes); then the token's quadrant
# of the frame (4).
AUX_CLASSES = (6, 5, 2, 4)
# Classes of the auxiliary target read from the LLM's first layer at the video tokens: ``Clip.labels``
# first (no object, earliest object, a later object).
ORDER_CLASSES = 3
_FIRST = 3  # column of ``first`` in ``Clip.labels``
# Family of training clip ``i``: ``TRAIN_FAMILIES[i % 10]``. The two position questions (where, motion)
# come twice as often: without that they were the families a run would fail to learn at all.
TRAIN_FAMILIES = ("needle", "cuts", "motion", "order", "where", "shake", "jolt", "late", "motion", "where")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (the defaults made the committed weights)."""

    seed: int = 0
    steps: int = 4800
    batch_size: int = 16
    lr: float = 3e-3  # peak learning rate of the LLM (and the auxiliary heads) ...
    vision_lr: float = 3e-3  # ... and of the vision tower (see the module docstring)
    warmup: int = 50
    weight_decay: float = 0.01
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    plain_start: float = 0.8  # share of flat-background clips at step 0 ...
    plain_until: float = 0.3  # ... falling linearly to 0 at this fraction of the steps
    aux_weight: float = 0.5  # weight of the per-token auxiliary loss on the vision tower's output
    drop_steps: float = 0.0  # share of steps whose clips lose video tokens (see ``_drop_selections``) ...
    drop_min_ratio: float = 0.1  # ... keeping a fraction drawn uniformly from [drop_min_ratio, 1] per clip

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if not 0.0 <= self.drop_steps <= 1.0:
            raise ConfigError(f"drop_steps must be in [0, 1], got {self.drop_steps}")
        if not 0.0 < self.drop_min_ratio <= 1.0:
            raise ConfigError(f"drop_min_ratio must be in (0, 1], got {self.drop_min_ratio}")


class _PatchMatmul(torch.nn.Conv3d):
    """A ``Conv3d`` with kernel == stride evaluated as ``linear(flat_patch, weight.flatten(1))``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x.flatten(1), self.weight.flatten(1), self.bias)
        return out.view(x.shape[0], -1, 1, 1, 1)


def _swap_patch_conv(model, cls: type[torch.nn.Conv3d]) -> None:
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


def _chunk_vision_attention(model, on: bool) -> None:
    """Swap (``on``) or restore the vision blocks' attention forward on this model instance only."""
    for block in model.model.visual.blocks:
        if on:
            block.attn.forward = _chunked_attention_forward.__get__(block.attn)
        else:
            block.attn.__dict__.pop("forward", None)


def _lr_scale(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak learning rates at ``step``: linear warm-up, then cosine decay."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _drop_selections(rng: np.random.Generator, what: np.ndarray, min_ratio: float) -> list[Selection]:
    """Content-blind token dropout for one training step: per clip, which video tokens reach the LLM.

    Args:
        rng: the step's generator.
        what: ``uint8[B, T, N]`` the ``what`` label of every video token (0: nothing drawn there).
        min_ratio: each clip keeps ``max(1, round(N * r))`` tokens of every temporal patch, ``r`` drawn
            uniformly from ``[min_ratio, 1]``; tokens showing an object come first, the rest at random
            (so the question stays answerable and only the background and the token count vary).

    Returns:
        one :class:`~vcast.Selection` per clip over its ``[T, N]`` grid.
    """
    b, t, n = what.shape
    keep = np.maximum(1, np.round(n * rng.uniform(min_ratio, 1.0, size=b))).astype(np.int64)
    order = np.argsort(-(rng.random((b, t, n)) + (what > 0)), axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(n)[None, None, :].repeat(b, 0).repeat(t, 1), axis=-1)
    masks = torch.from_numpy(ranks < keep[:, None, None])  # [B, T, N]
    return [make_selection(mask_to_index(m, t * int(k)), m.sum(1), t, n) for m, k in zip(masks, keep)]


def _batches(cfg: TrainConfig, processor, stop: threading.Event, out: queue.Queue) -> None:
    for step in range(cfg.steps):
        plain = cfg.plain_start * max(0.0, 1.0 - step / max(1.0, cfg.plain_until * cfg.steps))
        clips = tasks.make_split("train", cfg.seed, cfg.batch_size, start=step * cfg.batch_size, plain_fraction=plain,
                                 families=TRAIN_FAMILIES)
        lengths = sorted({len(c.frames) for c in clips})
        groups = [[c for c in clips if len(c.frames) == n] for n in lengths]  # one forward per clip length
        clips = [c for g in groups for c in g]
        rng = np.random.default_rng([cfg.seed, step, 7])
        drop = rng.random() < cfg.drop_steps
        parts = []
        for group in groups:
            labels = torch.from_numpy(np.stack([c.labels for c in group])).long()  # [b, T/2, G, G, 4]
            g = labels.shape[2]
            half = torch.arange(g) >= g // 2
            quadrant = (2 * half[:, None] + half[None, :]).long().expand(*labels.shape[:-1])
            what = labels[..., 0].flatten(2).numpy()  # [b, T/2, G*G]
            labels = torch.cat([labels, quadrant[..., None]], dim=-1).reshape(-1, labels.shape[-1] + 1)
            selections = _drop_selections(rng, what, cfg.drop_min_ratio) if drop else None
            parts.append((encode(processor, group), labels, selections))
        item = (parts, answer_ids(clips), [c.family for c in clips])
        while not stop.is_set():
            try:
                out.put(item, timeout=0.5)
                break
            except queue.Full:
                continue
        if stop.is_set():
            return


def train(cfg: TrainConfig, on_step: Callable[[int, float], None] | None = None, **model_overrides):
    """Train a fresh proxy model; returns ``(model, log)``.

    Args:
        cfg: hyper-parameters.
        on_step: called as ``on_step(step, loss)`` after each step (progress bars).
        **model_overrides: passed to :func:`vcast.proxy.model.build_config`.

    Returns:
        the trained ``Qwen3VLForConditionalGeneration`` in eval mode (real ``Conv3d`` restored) and a
        dict with the config, per-step losses, wall time and steps per second.
    """
    from vcast.api import enabled

    processor = build_processor()
    model = build_model(seed=cfg.seed, **model_overrides).train()
    _swap_patch_conv(model, _PatchMatmul)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        width = model.config.text_config.hidden_size
        aux_head = torch.nn.Linear(width, sum(AUX_CLASSES))
        order_head = torch.nn.Linear(width, ORDER_CLASSES)
    named = (list(model.named_parameters()) + [(f"aux.{n}", p) for n, p in aux_head.named_parameters()]
             + [(f"aux_order.{n}", p) for n, p in order_head.named_parameters()])
    video_token = model.config.video_token_id
    vision_cols = [c for c in range(len(AUX_CLASSES) + 1) if c != _FIRST]
    params = [p for _, p in named]
    groups = []
    for vision in (True, False):
        for decays in (True, False):
            ps = [p for n, p in named if n.startswith("model.visual.") == vision
                  and (p.ndim >= 2 and "embed" not in n) == decays]
            groups.append({"params": ps, "weight_decay": cfg.weight_decay if decays else 0.0,
                           "peak_lr": cfg.vision_lr if vision else cfg.lr})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))
    _chunk_vision_attention(model, True)
    stop, feed = threading.Event(), queue.Queue(maxsize=2)
    producer = threading.Thread(target=_batches, args=(cfg, processor, stop, feed), daemon=True)
    producer.start()
    losses: list[float] = []  # answer cross-entropy per step
    aux_losses: list[float] = []
    family_sums: dict[str, list[float]] = {}  # family -> [answer-loss sum, clips] since the last log
    family_losses: list[dict] = []  # every 100 steps: mean answer loss per family over those steps
    t0 = time.perf_counter()
    try:
        for step in range(cfg.steps):
            parts, target, families = feed.get()
            for group in opt.param_groups:
                group["lr"] = group["peak_lr"] * _lr_scale(step, cfg)
            logits, pooled, firsts, first_labels, all_labels = [], [], [], [], []
            for batch, labels, selections in parts:
                video = model.model.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"],
                                                       return_dict=True)
                text = {k: v for k, v in batch.items() if k != "pixel_values_videos"}
                if selections is None:
                    out = model(**text, mm_encoder_outputs={"video": video}, logits_to_keep=1,
                                output_hidden_states=True)
                    # (with dropout the hidden states no longer line up with ``labels``)
                    firsts.append(out.hidden_states[1][batch["input_ids"] == video_token])
                    first_labels.append(labels[:, _FIRST])
                else:  # token dropout through vcast's own adapter (pruned sequence, original MRoPE
                    # positions, deepstack rows), this instance's selection step fed the step's selections
                    with enabled(model, method="random") as handle:
                        handle.adapter.select = lambda features, grids=None, chosen=selections: chosen
                        out = model(**text, mm_encoder_outputs={"video": video}, logits_to_keep=1)
                logits.append(out.logits[:, -1])
                pooled.extend(video.pooler_output)
                all_labels.append(labels)
            per_clip = F.cross_entropy(torch.cat(logits).float(), target, reduction="none")
            answer_loss = per_clip.mean()
            labels = torch.cat(all_labels)
            aux = aux_head(torch.cat(pooled)).float().split(AUX_CLASSES, dim=-1)
            aux_loss = sum(F.cross_entropy(a, labels[:, c]) for c, a in zip(vision_cols, aux))
            if firsts:
                first = order_head(torch.cat(firsts)).float()
                aux_loss = aux_loss + F.cross_entropy(first, torch.cat(first_labels))
            loss = answer_loss + cfg.aux_weight * aux_loss
            for fam, value in zip(families, per_clip.detach().tolist()):
                acc = family_sums.setdefault(fam, [0.0, 0])
                acc[0] += value
                acc[1] += 1
            if (step + 1) % 100 == 0 or step + 1 == cfg.steps:
                family_losses.append({"step": step + 1, **{f: round(v / n, 4) for f, (v, n) in family_sums.items()}})
                family_sums = {}
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(answer_loss.item())
            aux_losses.append(aux_loss.item())
            if on_step is not None:
                on_step(step, losses[-1])
    finally:
        stop.set()
        producer.join()
    wall = time.perf_counter() - t0
    _swap_patch_conv(model, torch.nn.Conv3d)
    _chunk_vision_attention(model, False)
    model.eval()
    log = {"config": asdict(cfg), "model_overrides": model_overrides, "losses": losses, "aux_losses": aux_losses,
           "family_losses": family_losses,
           "wall_s": round(wall, 2), "steps_per_s": round(cfg.steps / wall, 4), "threads": torch.get_num_threads()}
    return model, log
