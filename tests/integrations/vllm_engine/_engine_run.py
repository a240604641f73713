"""Run ``vllm.LLM`` offline on tiny saved models for one plugin configuration; write the results as JSON.

Run by test_vllm_engine.py, one process per configuration: vLLM loads its plugins once per process
(front end, engine core, worker), each reading the VCAST_VLLM_* environment it was started with.

    python _engine_run.py --models '{"qwen3_vl": "DIR", ...}' --q 0.8 --out results.json
"""

import argparse
import gc
import json
import time

import vcast

# The chat template's form of a video (outer vision markers kept by vLLM with transformers >= 5.10),
# then enough text that the second, identical request finds the video in the prefix cache.
PROMPT = ("<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>"
          + "Describe the video in detail, frame by frame. " * 8 + "<|im_end|>\n<|im_start|>assistant\n")
MAX_TOKENS = 6
NUM_FRAMES, SIZE, FPS = 8, 64, 2.0


def stock_seams() -> dict[str, bool]:
    """In this (front-end) process: is each seam the plugin can patch vLLM's own object?

    (vcast's wrappers carry ``__wrapped__``, set by ``functools.wraps``.)
    """
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.models import qwen2_5_vl, qwen3_vl
    from vllm.multimodal.video_prune import evs, vidcom2

    return {
        "qwen3_vl.count": qwen3_vl.compute_retained_tokens_count is evs.compute_retained_tokens_count,
        "qwen3_vl.mask": qwen3_vl.compute_retention_mask is evs.compute_retention_mask,
        "qwen3_vl.vidcom2_mask": qwen3_vl.vidcom2_compute_retention_mask is vidcom2.compute_retention_mask,
        "qwen2_5_vl.mask": qwen2_5_vl.compute_retention_mask is evs.compute_retention_mask,
        "qwen3_vl.recompute": not hasattr(qwen3_vl.Qwen3VLForConditionalGeneration.recompute_mrope_positions,
                                          "__wrapped__"),
        "engine_args": not hasattr(EngineArgs._set_default_chunked_prefill_and_prefix_caching_args, "__wrapped__"),
    }


def run_model(path: str, q: float) -> dict:
    from vllm import LLM, SamplingParams

    start = time.perf_counter()
    llm = LLM(model=path, max_model_len=1024, max_num_seqs=1, limit_mm_per_prompt={"video": 1, "image": 0},
              enforce_eager=True, seed=0, **({"video_pruning_rate": q} if q else {}))
    started = time.perf_counter() - start
    video = vcast.testing.random_video(NUM_FRAMES, SIZE, SIZE, seed=0)
    meta = {"fps": FPS, "total_num_frames": NUM_FRAMES, "frames_indices": list(range(NUM_FRAMES)),
            "duration": NUM_FRAMES / FPS, "video_backend": "numpy"}
    params = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, logprobs=1)
    requests = []
    for _ in range(2):  # the same request twice: the second one meets the first in the prefix cache
        (out,) = llm.generate([{"prompt": PROMPT, "multi_modal_data": {"video": [(video, meta)]}}], params,
                              use_tqdm=False)
        gen = out.outputs[0]
        requests.append({
            "prompt_token_ids": list(out.prompt_token_ids),
            "token_ids": list(gen.token_ids),
            "logprobs": [d[t].logprob for d, t in zip(gen.logprobs, gen.token_ids)],
            "finish_reason": gen.finish_reason,
        })
    prefix_caching = llm.llm_engine.vllm_config.cache_config.enable_prefix_caching
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()
    return {"requests": requests, "prefix_caching": prefix_caching, "engine_start_s": round(started, 1),
            "total_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", required=True, help="JSON object: name -> saved model directory")
    p.add_argument("--q", type=float, default=0.0, help="vLLM's --video-pruning-rate (0: off)")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    results = {name: run_model(path, args.q) for name, path in json.loads(args.models).items()}
    results["_seams"] = stock_seams()
    with open(args.out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
