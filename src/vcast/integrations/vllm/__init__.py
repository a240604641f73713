"""V-CAST and the other vcast pruning methods in vLLM.

Two parts:

- :mod:`~vcast.integrations.vllm.methods`: the methods in vLLM's own form, plain functions on
  tensors that need no vLLM::

      from vcast.integrations.vllm import compute_retained_tokens_count, compute_retention_mask
      k = compute_retained_tokens_count(tokens_per_frame=196, num_frames=16, q=0.75)   # before encoding
      keep = compute_retention_mask(video_embeds, (16, 28, 28), spatial_merge_size=2, q=0.75)
      assert int(keep.sum()) == k

- :mod:`~vcast.integrations.vllm.plugin`: a ``vllm.general_plugins`` entry point, off unless asked::

      VCAST_VLLM_METHOD=vcast vllm serve MODEL --video-pruning-rate 0.75

Importing this package does not import vLLM.
"""

from vcast.integrations.vllm.methods import (
    AUTO_MESSAGE,
    compute_retained_tokens_count,
    compute_retention_mask,
    method_config,
    pruning_functions,
    vllm_methods,
)

__all__ = [
    "AUTO_MESSAGE",
    "compute_retained_tokens_count",
    "compute_retention_mask",
    "method_config",
    "pruning_functions",
    "vllm_methods",
]
