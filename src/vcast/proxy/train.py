"""Train the proxy Qwen3-VL from scratch on generated video questions (CPU, deterministic).

The committed weights in ``vcast/data/proxy/`` were produced by the command recorded in their
``train_log.json`` (``command``, with the weights' ``sha256`` and the recipe as ``config``); rerunning it
on the same torch build and thread count rebuilds the same bytes (tested on a short run in a
subprocess). Step ``s`` uses train clips ``s*B .. s*B+B-1`` of the given seed; a background thread
renders and encodes the next batch (:class:`~vcast.proxy.batching.FastEncoder`, identical to the
processor) while the current one trains.

The recipe (:class:`TrainConfig` defaults), and why (BENCHMARKS.md section 5 has every measured run):

- **Two stages.** Stage 1 (``vision_steps``) trains the vision tower alone on per-token targets (what
  the generator drew in each LLM token: which shape or a flash, the shape's motion, whether the
  token's temporal patch holds a cut, its quadrant), object tokens weighted ``object_weight`` against
  the far more numerous background tokens. Stage 2 (``steps``) trains everything. Trained end to end
  from the start, the vision tower was the bottleneck: after 1500 steps it named the object in only
  27% of the object tokens (47% with object weight 5), and the answer could not be better than that;
  alone it reaches 86% in 1200 steps that cost 40% of a full step each.
- **Evidence attention.** The answer is read at the last prompt position, which must find 1-4
  object tokens among ~200 (~800 for 64-frame clips) while its attention starts uniform: runs trained
  on the answer alone sat on that plateau (shape questions at chance after 1500 steps). A loss on
  the answer position's attention (``evidence_layers``, the first ``evidence_heads`` heads of each) asks
  for its mass on the tokens showing the question's evidence (see
  :func:`vcast.proxy.batching.token_targets`); it is read with :class:`~vcast.proxy.attention.AnswerAttention`.
  The other heads are free.
- A head on the LLM's first layer predicts, at each object token, whether its object was the clip's
  earliest (``Clip.labels`` ``first``), the look-back the ``order`` questions need.
- Training clips cycle through :data:`TRAIN_FAMILIES`, the position questions twice; a third of the
  training shots use procedural backgrounds (``tasks._texture``) besides the recoloured, turned photos;
  early clips are partly drawn on flat backgrounds (80% at step 0, none from 30% of the steps on).
- AdamW, per stage a linear warm-up then cosine decay; cross-entropy on the one answer token (full
  vocabulary); peak rates 3e-3 (LLM and heads) and 2e-3 (vision tower: 1e-2 never learned).
- Options measured and left off by default: a token curriculum (``thin_until``: early steps keep only
  a rising share of each temporal patch's tokens, objects first, through vcast's own adapter; no gain
  over the recipe) and token dropout after it (``drop_steps``: at 0.5, 96-97% retention at ratio 0.1
  for every method alike, and 9 points lost unpruned, on the first proxy).

Each step runs one forward per clip length (the 64-frame ``late`` clips apart from the 16-frame ones,
so short prompts are not padded to long ones). The vision tower runs with the speed-ups of
:mod:`vcast.proxy.fastpath` on this instance only; the saved model is the plain
``Qwen3VLForConditionalGeneration`` (the heads are not saved).
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
from vcast.proxy import tasks
from vcast.proxy.attention import AnswerAttention
from vcast.proxy.batching import (
    CUT,
    EVIDENCE,
    FIRST,
    MOTION,
    QUADRANT,
    WHAT,
    FastEncoder,
    pruned_to,
    thin_selections,
    token_targets,
)
from vcast.proxy.fastpath import PatchMatmul, chunk_vision_attention, swap_patch_conv
from vcast.proxy.model import answer_ids, build_model, build_processor

# Classes of the per-token auxiliary targets read from the vision tower's output: ``Clip.labels``
# what (none, 4 shapes, flash), motion (none, 4 directions), cut (no, yes); then the token's quadrant
# of the frame (4).
AUX_CLASSES = (6, 5, 2, 4)
# Classes of the auxiliary target read from the LLM's first layer at the video tokens: ``Clip.labels``
# first (no object, earliest object, a later object).
ORDER_CLASSES = 3
# Family of training clip ``i``: ``TRAIN_FAMILIES[i % 10]``. The two position questions (where, motion)
# come twice as often: without that they were the families a run would fail to learn at all.
TRAIN_FAMILIES = ("needle", "cuts", "motion", "order", "where", "shake", "jolt", "late", "motion", "where")


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (the defaults made the committed weights).

    Two stages: ``vision_steps`` steps train the vision tower alone on the per-token targets (no LLM
    forward: about 2.5x cheaper per step), then ``steps`` steps train everything. Each stage has its
    own warm-up and cosine decay.
    """

    seed: int = 0
    steps: int = 3000  # full-model steps (stage 2)
    batch_size: int = 16
    vision_steps: int = 1200  # vision-only steps before them (stage 1)
    lr: float = 3e-3  # peak learning rate of the LLM (and the auxiliary heads) ...
    vision_lr: float = 2e-3  # ... and of the vision tower (see the module docstring)
    warmup: int = 50
    weight_decay: float = 0.01
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    plain_start: float = 0.8  # share of flat-background clips at step 0 ...
    plain_until: float = 0.3  # ... falling linearly to 0 at this fraction of all steps
    aux_weight: float = 0.5  # weight of the per-token auxiliary losses
    object_weight: float = 10.0  # weight of object / flash tokens (vs background) in the ``what`` term
    evidence_weight: float = 1.0  # weight of the evidence-attention loss (see ``_evidence_loss``) ...
    evidence_layers: tuple[int, ...] = (1, 2)  # ... on the answer position's attention in these LLM layers ...
    evidence_heads: int = 4  # ... in the first this many heads of each
    thin_until: float = 0.0  # token curriculum: the first share of stage 2 thins every clip ...
    thin_start: float = 0.0625  # ... keeping a share of its video tokens from [thin_start, rising to 1]
    drop_steps: float = 0.0  # after that, the share of steps whose clips lose video tokens ...
    drop_min_ratio: float = 0.1  # ... keeping a fraction drawn uniformly from [drop_min_ratio, 1] per clip

    def __post_init__(self) -> None:
        for name in ("batch_size", "warmup", "evidence_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seed", "steps", "vision_steps", "evidence_weight", "aux_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.total_steps < 1:
            raise ConfigError("steps + vision_steps must be >= 1")
        if any(i < 0 for i in self.evidence_layers):
            raise ConfigError(f"evidence_layers must be LLM layer indices >= 0, got {self.evidence_layers}")
        for name in ("drop_steps", "thin_until", "plain_start", "plain_until"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("thin_start", "drop_min_ratio"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        for name in ("lr", "vision_lr", "object_weight"):
            if not getattr(self, name) > 0.0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def total_steps(self) -> int:
        """``vision_steps + steps``: the optimizer steps of both stages."""
        return self.vision_steps + self.steps


def _lr_scale(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak learning rates at global ``step``: per stage, linear warm-up then cosine decay."""
    local, length = (step, cfg.vision_steps) if step < cfg.vision_steps else (step - cfg.vision_steps, cfg.steps)
    if local < cfg.warmup:
        return (local + 1) / cfg.warmup
    t = (local - cfg.warmup) / max(1, length - cfg.warmup)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def keep_ratios(step: int, cfg: TrainConfig, rng: np.random.Generator, clips: int) -> np.ndarray | None:
    """``float[clips]``: the share of each temporal patch's video tokens each clip keeps on global
    ``step`` (None: every token; always None in stage 1, where no LLM runs).

    During the token curriculum (the first ``thin_until`` of stage 2) every clip is thinned, its ratio
    drawn uniformly from ``[thin_start, hi]`` with ``hi`` rising linearly from ``thin_start`` to 1;
    afterwards a step is thinned with probability ``drop_steps``, ratios uniform in ``[drop_min_ratio, 1]``.
    """
    local = step - cfg.vision_steps
    if local < 0:
        return None
    until = cfg.thin_until * cfg.steps
    if local < until:
        hi = cfg.thin_start + (1.0 - cfg.thin_start) * local / until
        return rng.uniform(cfg.thin_start, hi, size=clips)
    if rng.random() < cfg.drop_steps:
        return rng.uniform(cfg.drop_min_ratio, 1.0, size=clips)
    return None


def make_step(cfg: TrainConfig, encoder: FastEncoder, step: int):
    """The inputs of global training step ``step``: ``(parts, answer ids LongTensor[B], families)``.

    Step ``s`` uses train clips ``s*B .. s*B+B-1``, grouped by clip length (one forward each, so short
    prompts are not padded to long ones); ``parts`` holds per group ``(inputs, targets, selections)``:
    the processor's ``BatchFeature``, :func:`token_targets` and the thinning (None: not thinned).
    """
    plain = cfg.plain_start * max(0.0, 1.0 - step / max(1.0, cfg.plain_until * cfg.total_steps))
    clips = tasks.make_split("train", cfg.seed, cfg.batch_size, start=step * cfg.batch_size, plain_fraction=plain,
                             families=TRAIN_FAMILIES)
    lengths = sorted({len(c.frames) for c in clips})
    groups = [[c for c in clips if len(c.frames) == n] for n in lengths]
    clips = [c for g in groups for c in g]
    rng = np.random.default_rng([cfg.seed, step, 7])
    ratios = keep_ratios(step, cfg, rng, len(clips))
    parts, done = [], 0
    for group in groups:
        targets = token_targets(group)
        selections = None
        if ratios is not None:
            what = targets[:, WHAT].reshape(len(group), -1, tasks.FRAME_SIZE ** 2 // tasks.TOKEN_PX ** 2).numpy()
            selections = thin_selections(rng, what, ratios[done:done + len(group)])
        parts.append((encoder(group), targets, selections))
        done += len(group)
    return parts, answer_ids(clips), [c.family for c in clips]


def _feed(cfg: TrainConfig, encoder: FastEncoder, stop: threading.Event, out: queue.Queue) -> None:
    for step in range(cfg.total_steps):
        item = make_step(cfg, encoder, step)
        while not stop.is_set():
            try:
                out.put(item, timeout=0.5)
                break
            except queue.Full:
                continue
        if stop.is_set():
            return


def _video_features(model, inputs):
    return model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"], return_dict=True)


def _forward(model, inputs, targets: torch.Tensor, selections: list[Selection] | None):
    """One group's full forward: ``(answer logits [b, V], video features [tokens, D], hidden states
    after the LLM's first layer at the video tokens that reached it [kept, D], their targets [kept, 6],
    which sequence positions hold them BoolTensor[b, L'])``.

    A thinned group runs through vcast's own adapter (pruned sequence, original MRoPE positions,
    deepstack rows), this instance's selection step fed the step's selections.
    """
    from vcast.models.base import plan_rows

    video = _video_features(model, inputs)
    text = {k: v for k, v in inputs.items() if k != "pixel_values_videos"}
    is_video = inputs["input_ids"] == model.config.video_token_id
    if selections is None:
        out = model(**text, mm_encoder_outputs={"video": video}, logits_to_keep=1, output_hidden_states=True)
        reached, kept_targets = is_video, targets
    else:
        with pruned_to(model, selections):
            out = model(**text, mm_encoder_outputs={"video": video}, logits_to_keep=1, output_hidden_states=True)
        kept = torch.cat([s.keep_mask().reshape(-1) for s in selections])  # over the video tokens, in order
        keep = ~is_video
        keep[is_video] = kept
        reached, kept_targets = plan_rows(keep).gather(is_video, False), targets[kept]
    return (out.logits[:, -1], torch.cat(list(video.pooler_output)), out.hidden_states[1][reached], kept_targets,
            reached)


def _evidence_loss(probs: list[torch.Tensor], reached: torch.Tensor, targets: torch.Tensor,
                   heads: int) -> torch.Tensor | None:
    """Mean over clips with evidence and over supervised heads of ``-log(attention mass on the evidence)``.

    Args:
        probs: per supervised layer ``FloatTensor[b, H, L']``, the answer position's attention.
        reached: ``BoolTensor[b, L']``, the positions of the video tokens that reached the LLM.
        targets: ``LongTensor[kept, 6]``, their targets in the same order (``EVIDENCE`` column).
        heads: the first this many heads of each layer are supervised.

    Returns:
        the loss, or None when no clip of the group has evidence (``cuts`` clips have none).
    """
    evidence = torch.zeros(reached.shape, dtype=torch.bool)
    evidence[reached] = targets[:, EVIDENCE].bool()
    rows = evidence.any(-1)
    if not bool(rows.any()):
        return None
    mass = torch.stack([(p[:, :heads] * evidence[:, None]).sum(-1) for p in probs], dim=1)  # [b, layers, heads]
    return -torch.log(mass[rows].clamp_min(1e-6)).mean()


class _Meter:
    """Means over each 100 steps: per family the answer loss and accuracy; each auxiliary loss; the share
    of object tokens whose ``what`` the vision head gets right (``what_recall``)."""

    def __init__(self) -> None:
        self.log: dict[str, list[dict]] = {"family_losses": [], "family_accuracy": [], "aux_losses": []}
        self._fam: dict[str, list[tuple[float, bool]]] = {}
        self._aux: dict[str, list[float]] = {}

    def add(self, families: list[str] | None, per_clip, right, parts_loss: dict) -> None:
        if families is not None:
            for fam, value, ok in zip(families, per_clip.tolist(), right.tolist()):
                self._fam.setdefault(fam, []).append((value, ok))
        for name, value in parts_loss.items():
            self._aux.setdefault(name, []).append(float(value.detach()) if torch.is_tensor(value) else float(value))

    def flush(self, step: int) -> None:
        if self._fam:
            self.log["family_losses"].append({"step": step, **{f: round(float(np.mean([v for v, _ in x])), 4)
                                                               for f, x in self._fam.items()}})
            self.log["family_accuracy"].append({"step": step, **{f: round(float(np.mean([o for _, o in x])), 3)
                                                                 for f, x in self._fam.items()}})
        self.log["aux_losses"].append({"step": step, **{k: round(float(np.nanmean(v)), 4)
                                                        for k, v in self._aux.items()}})
        self._fam, self._aux = {}, {}


class _Heads(torch.nn.Module):
    """The training-only heads: per-token targets from the vision tower's output (``vision``) and the
    ``first`` target from the LLM's first layer (``order``). Not saved with the model."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.vision = torch.nn.Linear(width, sum(AUX_CLASSES))
        self.order = torch.nn.Linear(width, ORDER_CLASSES)

    def vision_losses(self, pooled: torch.Tensor, targets: torch.Tensor, object_weight: float) -> dict:
        """Cross-entropies of the per-token targets (``what`` with object tokens weighted) and ``what_recall``."""
        logits = dict(zip(("what", "motion", "cut", "quadrant"), self.vision(pooled).float().split(AUX_CLASSES, -1)))
        out = {name: F.cross_entropy(logits[name], targets[:, col])
               for name, col in (("motion", MOTION), ("cut", CUT), ("quadrant", QUADRANT))}
        objects = targets[:, WHAT] > 0
        weight = 1.0 + (object_weight - 1.0) * objects.float()
        out["what"] = (F.cross_entropy(logits["what"], targets[:, WHAT], reduction="none") * weight).sum() / weight.sum()
        out["what_recall"] = (logits["what"].argmax(-1)[objects] == targets[objects, WHAT]).float().mean().detach()
        return out


def train(cfg: TrainConfig, on_step: Callable[[int, float], None] | None = None, **model_overrides):
    """Train a fresh proxy model; returns ``(model, log)``.

    Args:
        cfg: hyper-parameters.
        on_step: called as ``on_step(step, loss)`` after each of the ``cfg.total_steps`` steps (progress
            bars; ``loss`` is the answer loss, NaN in stage 1).
        **model_overrides: passed to :func:`vcast.proxy.model.build_config`.

    Returns:
        the trained ``Qwen3VLForConditionalGeneration`` in eval mode (real ``Conv3d`` and attention
        restored) and a dict with the config, per-step answer losses (stage 2), per-family answer loss
        and accuracy and the auxiliary losses every 100 steps, wall time and steps per second.
    """
    model = build_model(seed=cfg.seed, **model_overrides).train()
    layers = model.config.text_config.num_hidden_layers
    if cfg.evidence_weight > 0 and max(cfg.evidence_layers, default=0) >= layers:
        raise ConfigError(f"evidence_layers {cfg.evidence_layers} must be below the LLM's {layers} layers")
    swap_patch_conv(model, PatchMatmul)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        heads = _Heads(model.config.text_config.hidden_size)
    named = list(model.named_parameters()) + [(f"heads.{n}", p) for n, p in heads.named_parameters()]
    params = [p for _, p in named]
    groups = []
    for vision in (True, False):
        for decays in (True, False):
            ps = [p for n, p in named if n.startswith("model.visual.") == vision
                  and (p.ndim >= 2 and "embed" not in n) == decays]
            groups.append({"params": ps, "weight_decay": cfg.weight_decay if decays else 0.0,
                           "peak_lr": cfg.vision_lr if vision else cfg.lr})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98))
    chunk_vision_attention(model, True)
    probe = AnswerAttention(model, cfg.evidence_layers) if cfg.evidence_weight > 0 else None
    stop, feed = threading.Event(), queue.Queue(maxsize=2)
    producer = threading.Thread(target=_feed, args=(cfg, FastEncoder(build_processor()), stop, feed), daemon=True)
    producer.start()
    losses: list[float] = []  # answer cross-entropy per stage-2 step
    meter = _Meter()
    t0 = time.perf_counter()
    try:
        for step in range(cfg.total_steps):
            parts, target, families = feed.get()
            for group in opt.param_groups:
                group["lr"] = group["peak_lr"] * _lr_scale(step, cfg)
            targets = torch.cat([part[1] for part in parts])  # every video token's, in order
            if step < cfg.vision_steps:
                pooled = torch.cat([f for part in parts for f in _video_features(model, part[0]).pooler_output])
                parts_loss = heads.vision_losses(pooled, targets, cfg.object_weight)
                loss, per_clip, right, families = None, None, None, None
            else:
                outs, evidence = [], []
                for part in parts:
                    outs.append(_forward(model, *part))
                    if probe is not None:
                        ev = _evidence_loss(probe.probs, outs[-1][4], outs[-1][3], cfg.evidence_heads)
                        if ev is not None:
                            evidence.append(ev * len(part[0]["input_ids"]))
                        probe.clear()
                logits, pooled, firsts, first_targets = (torch.cat(x) for x in list(zip(*outs))[:4])
                per_clip = F.cross_entropy(logits.float(), target, reduction="none")
                right = logits.argmax(-1) == target
                parts_loss = heads.vision_losses(pooled, targets, cfg.object_weight)
                parts_loss["first"] = F.cross_entropy(heads.order(firsts).float(), first_targets[:, FIRST])
                loss = per_clip.mean()
                if evidence:
                    parts_loss["evidence"] = sum(evidence) / len(target)
                    loss = loss + cfg.evidence_weight * parts_loss["evidence"]
            aux = sum(v for k, v in parts_loss.items() if k not in ("what_recall", "evidence"))
            loss = cfg.aux_weight * aux if loss is None else loss + cfg.aux_weight * aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            meter.add(families, per_clip, right, parts_loss)
            if (step + 1) % 100 == 0 or step + 1 == cfg.total_steps:
                meter.flush(step + 1)
            if per_clip is not None:
                losses.append(float(per_clip.detach().mean()))
            if on_step is not None:
                on_step(step, losses[-1] if per_clip is not None else float("nan"))
    finally:
        stop.set()
        producer.join()
        if probe is not None:
            probe.remove()
    wall = time.perf_counter() - t0
    swap_patch_conv(model, torch.nn.Conv3d)
    chunk_vision_attention(model, False)
    model.eval()
    log = {"config": asdict(cfg), "model_overrides": model_overrides, "losses": losses, **meter.log,
           "wall_s": round(wall, 2), "steps_per_s": round(cfg.total_steps / wall, 4),
           "threads": torch.get_num_threads()}
    return model, log
