"""Train the proxy Qwen3-VL from scratch on generated video questions (CPU, deterministic).

The committed weights in ``vcast/data/proxy/`` were produced by::

    vcast proxy train --seed 0 --steps 2400 --out src/vcast/data/proxy

Training: AdamW, linear warm-up then cosine decay, cross-entropy on the one answer token (full
vocabulary). A curriculum eases the start: early clips are partly drawn on flat backgrounds (80% at
step 0, none from 30% of the steps on), where the events stand out, then only photos. An auxiliary loss
speeds up the vision tower: a linear head (training only, not saved) reads each LLM-bound video
token and predicts what the generator drew there (``Clip.labels``: which shape or a flash, the
shape's motion, whether the token's temporal patch holds a cut, which quadrant it lies in). The saved model is the plain
``Qwen3VLForConditionalGeneration``; the head is dropped. Step ``s`` uses train clips ``s*B .. s*B+B-1`` of the given seed, so every run with the
same seed, steps, batch size, torch version and thread count produces the same weights. A
background thread renders and encodes the next batch while the current one trains.

For speed the vision tower's patch embedding (a ``Conv3d`` whose kernel equals its stride, i.e. a
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

from vcast.errors import ConfigError
from vcast.proxy import tasks
from vcast.proxy.model import answer_ids, build_model, build_processor, encode

# Classes of the per-token auxiliary targets: ``Clip.labels`` what (none, 4 shapes, flash), motion
# (none, 4 directions), cut (no, yes); then the token's quadrant of the frame (4).
AUX_CLASSES = (6, 5, 2, 4)


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (the defaults made the committed weights)."""

    seed: int = 0
    steps: int = 2400
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 50
    weight_decay: float = 0.01
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    plain_start: float = 0.8  # share of flat-background clips at step 0 ...
    plain_until: float = 0.3  # ... falling linearly to 0 at this fraction of the steps
    aux_weight: float = 0.5  # weight of the per-token auxiliary loss on the vision tower's output

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")


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


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def _batches(cfg: TrainConfig, processor, stop: threading.Event, out: queue.Queue) -> None:
    for step in range(cfg.steps):
        plain = cfg.plain_start * max(0.0, 1.0 - step / max(1.0, cfg.plain_until * cfg.steps))
        clips = tasks.make_split("train", cfg.seed, cfg.batch_size, start=step * cfg.batch_size, plain_fraction=plain)
        labels = torch.from_numpy(np.stack([c.labels for c in clips])).long()  # [B, T/2, G, G, 3]
        g = labels.shape[2]
        half = torch.arange(g) >= g // 2
        quadrant = (2 * half[:, None] + half[None, :]).long().expand(*labels.shape[:-1])
        labels = torch.cat([labels, quadrant[..., None]], dim=-1).reshape(-1, len(AUX_CLASSES))
        item = (encode(processor, clips), answer_ids(clips), labels)
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
    processor = build_processor()
    model = build_model(seed=cfg.seed, **model_overrides).train()
    _swap_patch_conv(model, _PatchMatmul)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        aux_head = torch.nn.Linear(model.config.text_config.hidden_size, sum(AUX_CLASSES))
    named = list(model.named_parameters()) + [(f"aux.{n}", p) for n, p in aux_head.named_parameters()]
    params = [p for _, p in named]
    decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98))
    stop, feed = threading.Event(), queue.Queue(maxsize=2)
    producer = threading.Thread(target=_batches, args=(cfg, processor, stop, feed), daemon=True)
    producer.start()
    losses: list[float] = []  # answer cross-entropy per step
    aux_losses: list[float] = []
    t0 = time.perf_counter()
    try:
        for step in range(cfg.steps):
            batch, target, labels = feed.get()
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, cfg)
            video = model.model.get_video_features(batch["pixel_values_videos"], batch["video_grid_thw"],
                                                   return_dict=True)
            text = {k: v for k, v in batch.items() if k != "pixel_values_videos"}
            logits = model(**text, mm_encoder_outputs={"video": video}, logits_to_keep=1).logits[:, -1]
            answer_loss = F.cross_entropy(logits.float(), target)
            aux = aux_head(torch.cat(video.pooler_output)).float().split(AUX_CLASSES, dim=-1)
            aux_loss = sum(F.cross_entropy(a, labels[:, i]) for i, a in enumerate(aux))
            loss = answer_loss + cfg.aux_weight * aux_loss
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
    model.eval()
    log = {"config": asdict(cfg), "model_overrides": model_overrides, "losses": losses, "aux_losses": aux_losses,
           "wall_s": round(wall, 2), "steps_per_s": round(cfg.steps / wall, 4), "threads": torch.get_num_threads()}
    return model, log
