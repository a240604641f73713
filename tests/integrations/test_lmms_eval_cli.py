"""The real ``lmms_eval`` CLI, offline, on tiny saved models and a tiny local video QA task.

One ``python -m lmms_eval --config runs.yaml`` process runs every configuration (Qwen3-VL,
Qwen2.5-VL, Qwen2-VL, LLaVA-OneVision and Qwen3.5; chat and simple classes; pruned and unpruned; the generic
``--model vcast``; another method; ``reproduce=``; a bad option). lmms-eval exits 0 even after
``Error during evaluation``, so every check reads the results, samples and stats files.
Skipped where lmms-eval is not installed (``pip install "vcast[lmms-eval]"``), unless
``VCAST_REQUIRE_LMMS_EVAL=1`` (CI's lmms-eval step) makes that an error.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("VCAST_REQUIRE_LMMS_EVAL") != "1":
    pytest.importorskip("lmms_eval", reason='lmms-eval is not installed (pip install "vcast[lmms-eval]"; CI runs these)')

import yaml  # noqa: E402  (lmms-eval depends on pyyaml)

import vcast.testing as vt  # noqa: E402
from vcast.video import write_video  # noqa: E402

pytestmark = pytest.mark.slow

TASK = "vcast_tiny_videoqa"
DOCS = 3
# lmms-eval base -> (tiny model type, --model_args that size the inputs for the tiny model)
BASES = {
    "qwen3_vl": ("qwen3_vl", "device_map=cpu,min_pixels=4096,max_pixels=4096,max_num_frames=8"),
    "qwen2_5_vl": ("qwen2_5_vl", "device_map=cpu,min_pixels=4096,max_pixels=4096,max_num_frames=8"),
    "llava_hf": ("llava_onevision", "max_frames_num=4"),
    "qwen3_5": ("qwen3_5", "device_map=cpu,min_pixels=4096,max_pixels=4096,max_num_frames=8"),
    "qwen2_vl": ("qwen2_vl", "device_map=cpu,min_pixels=4096,max_pixels=4096,max_num_frames=8"),
}
SIMPLE_ONLY = {"qwen2_vl"}  # lmms-eval has no chat class for it


def kinds(base):
    return ("simple",) if base in SIMPLE_ONLY else ("chat", "simple")
RATIO = 0.25
SHORT_DOC, SHORT_CLIP_FRAMES = 2, 7  # fewer frames than max_num_frames, and odd

TASK_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 3
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: accuracy
    aggregation: mean
    higher_is_better: true
lmms_eval_specific_kwargs:
  default:
    post_prompt: "[default prompt]"
{blocks}
"""

TASK_UTILS = '''
def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    options = "\\n".join(f"{letter}. {o}" for letter, o in zip("ABC", doc["options"]))
    return f"{doc['question']}\\n{options}\\n{(lmms_eval_specific_kwargs or {}).get('post_prompt', '')}"


def process_results(doc, results):
    return {"accuracy": float(results[0].strip()[:1] == doc["answer"])}
'''


def _run(name, model, model_args, *, force_simple=False, root):
    return {"model": model, "model_args": f"{model_args},vcast_stats={root / 'stats' / name}.jsonl",
            "tasks": TASK, "include_path": str(root / "tasks"), "output_path": str(root / "out" / name),
            "log_samples": True, "device": "cpu", "batch_size": 1, "force_simple": force_simple}


def _runs(root: Path) -> dict[str, dict]:
    runs = {}
    for base, (model_type, sizes) in BASES.items():
        for kind in kinds(base):
            for method in ("vcast", "none"):
                args = f"pretrained={root / model_type},{sizes},method={method}"
                if method == "vcast":
                    args += f",retain_ratio={RATIO}"
                name = f"{base}-{kind}-{method}"
                runs[name] = _run(name, f"vcast_{base}", args, force_simple=kind == "simple", root=root)
    runs["generic"] = _run("generic", "vcast", f"pretrained={root / 'llava_onevision'},max_frames_num=4,"
                                               f"retain_ratio={RATIO}", root=root)
    runs["evs"] = _run("evs", "vcast_qwen3_vl", f"pretrained={root / 'qwen3_vl'},{BASES['qwen3_vl'][1]},"
                                                "method=evs,retain_ratio=0.5", root=root)
    runs["authors"] = _run("authors", "vcast_qwen3_vl", f"pretrained={root / 'qwen3_vl'},{BASES['qwen3_vl'][1]},"
                                                        f"retain_ratio={RATIO},reproduce=authors", root=root)
    runs["bad"] = _run("bad", "vcast_qwen3_vl", f"pretrained={root / 'qwen3_vl'},retain_ratio=2", root=root)
    return runs


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Build the models, clips and task; run the CLI once. Returns (root, runs, log)."""
    root = tmp_path_factory.mktemp("lmms")
    for model_type, _ in BASES.values():
        model, processor = vt.tiny_model(model_type)
        model.save_pretrained(root / model_type)
        processor.save_pretrained(root / model_type)
    docs = []
    for i in range(DOCS):
        frames = SHORT_CLIP_FRAMES if i == SHORT_DOC else 8  # the runs ask for up to 8 frames
        clip = write_video(root / f"clip{i}.mp4", vt.random_video(frames, 64, 64, seed=i), fps=4)
        docs.append({"video": str(clip), "question": f"Which colour moves? ({i})",
                     "options": ["red", "green", "blue"], "answer": "ABC"[i]})
    (root / "data.json").write_text(json.dumps(docs))
    (root / "tasks").mkdir()
    blocks = "\n".join(f'  {b}:\n    post_prompt: "[{b} prompt]"' for b in BASES)
    (root / "tasks" / "tiny.yaml").write_text(TASK_YAML.format(task=TASK, data=root / "data.json", blocks=blocks))
    (root / "tasks" / "utils.py").write_text(TASK_UTILS)
    runs = _runs(root)
    (root / "runs.yaml").write_text(yaml.safe_dump(list(runs.values())))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HOME": str(root / "hf"), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "lmms_eval", "--config", str(root / "runs.yaml")],
                          capture_output=True, text=True, env=env, timeout=1800)
    log = proc.stdout + proc.stderr
    (root / "lmms_eval.log").write_text(log)
    return root, runs, log


def _results(root, name):
    found = sorted((root / "out" / name).rglob("*_results.json"))
    return json.loads(found[-1].read_text()) if found else None


def _samples(root, name):
    (path,) = (root / "out" / name).rglob(f"*_samples_{TASK}.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def _stats(root, name):
    lines = [json.loads(line) for line in (root / "stats" / f"{name}.jsonl").read_text().splitlines()]
    return {line["doc_id"]: line for line in lines}, lines


GOOD = [f"{b}-{k}-{m}" for b in BASES for k in kinds(b) for m in ("vcast", "none")] + ["generic", "evs", "authors"]


def test_only_the_bad_run_failed(cli):
    root, _, log = cli
    errors = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", log).splitlines() if "| ERROR" in line]
    assert len(errors) == 1 and "retain_ratio must be in (0, 1]" in errors[0], "\n".join(errors) or log[-3000:]
    assert _results(root, "bad") is None


@pytest.mark.parametrize("name", GOOD)
def test_results_samples_and_prompts(cli, name):
    root, runs, log = cli
    results = _results(root, name)
    assert results is not None, f"no results for {name}; log tail:\n{log[-3000:]}"
    assert results["config"]["model"] == runs[name]["model"]
    assert isinstance(results["results"][TASK]["accuracy,none"], float)
    assert results["n-samples"][TASK]["effective"] == DOCS
    samples = _samples(root, name)
    assert sorted(s["doc_id"] for s in samples) == list(range(DOCS))
    base = "llava_hf" if name == "generic" else "qwen3_vl" if name in ("evs", "authors") else name.split("-")[0]
    for s in samples:  # the base's prompt block, not lmms-eval's default for an unknown --model
        assert s["input"].endswith(f"[{base} prompt]"), s["input"]


@pytest.mark.parametrize(("base", "kind"), [(b, k) for b in BASES for k in kinds(b)])
def test_pruned_prefill_is_shorter_by_exactly_the_dropped_tokens(cli, base, kind):
    root, _, _ = cli
    pruned, lines = _stats(root, f"{base}-{kind}-vcast")
    unpruned, plain_lines = _stats(root, f"{base}-{kind}-none")
    assert len(lines) == len(plain_lines) == DOCS and sorted(pruned) == sorted(unpruned) == list(range(DOCS))
    for doc_id, p in pruned.items():
        u = unpruned[doc_id]
        assert p["task"] == u["task"] == TASK and p["method"] == "vcast" and u["method"] == "none"
        assert u["videos"] == [] and u["prefill_length_after"] == u["prefill_length_before"]
        assert u["video_tokens_after"] == u["video_tokens_before"] > 0
        # the pruned run saw exactly the unpruned prefill, then dropped (1 - r) of each video's grid
        assert p["prefill_length_before"] == u["prefill_length_before"]
        assert p["video_tokens_before"] == u["video_tokens_before"]
        (video,) = p["videos"]
        assert video["tokens_before"] == video["frames"] * video["tokens_per_frame"]
        assert video["tokens_kept"] == round(video["tokens_before"] * RATIO)
        dropped = video["tokens_before"] - video["tokens_kept"]
        assert p["video_tokens_before"] - p["video_tokens_after"] == dropped
        assert p["prefill_length_after"] == u["prefill_length_before"] - dropped
        assert p["prompt_tokens_after"] == p["prefill_length_after"] and p["batch_rows"] == 1


def test_llava_chat_and_simple_see_the_same_frames(cli):
    """The chat class decodes videos with the simple class's loader (vcast's workaround)."""
    root, _, _ = cli
    for method in ("vcast", "none"):
        chat, _ = _stats(root, f"llava_hf-chat-{method}")
        simple, _ = _stats(root, f"llava_hf-simple-{method}")
        assert chat == simple
        for line in chat.values():  # 4 frames x 16 tokens + the newline
            assert line["video_tokens_before"] == 4 * 16 + 1


def test_generic_id_reads_the_base_from_the_checkpoint(cli):
    root, _, _ = cli
    generic, _ = _stats(root, "generic")
    assert generic == _stats(root, "llava_hf-chat-vcast")[0]


@pytest.mark.parametrize("kind", ["chat", "simple"])
def test_qwen3_vl_reads_a_clip_shorter_than_max_num_frames(cli, kind):
    """lmms-eval's Qwen3-VL class asks for exactly max_num_frames and fails on this clip; vcast's asks for at
    most that many: 8 frames (4 temporal patches) of the long clips, 6 (3) of the 7-frame one."""
    root, _, _ = cli
    for method in ("vcast", "none"):
        stats, _ = _stats(root, f"qwen3_vl-{kind}-{method}")
        for doc_id, line in stats.items():
            assert line["video_tokens_before"] == (3 if doc_id == SHORT_DOC else 4) * 16



@pytest.mark.parametrize("kind", ["chat", "simple"])
def test_qwen3_5_samples_frames_by_fps(cli, kind):
    """lmms-eval's Qwen3.5 class sets total_pixels, so qwen-vl-utils samples at its 2 fps, capped at max_num_frames:
    4 frames (2 temporal patches) of every 4-fps clip here, the 7-frame one included; vcast changes none of it."""
    root, _, _ = cli
    for method in ("vcast", "none"):
        stats, _ = _stats(root, f"qwen3_5-{kind}-{method}")
        assert sorted(stats) == list(range(DOCS))
        for line in stats.values():
            assert line["video_tokens_before"] == 2 * 16

def test_other_methods_and_options_pass_through(cli):
    root, _, _ = cli
    evs, _ = _stats(root, "evs")
    for line in evs.values():
        assert line["method"] == "evs" and line["config"]["retain_ratio"] == 0.5
        (video,) = line["videos"]
        assert video["tokens_kept"] == round(video["tokens_before"] * 0.5)


def test_adopt_prompt_blocks_changes_only_a_task_manager_named_for_vcast():
    from lmms_eval.tasks import TaskManager

    from vcast.integrations.lmms_eval import adopt_prompt_blocks

    def built_inside(*managers):  # as the model is built inside simple_evaluate, which holds the manager
        return adopt_prompt_blocks("llava_vid")

    ours = TaskManager.__new__(TaskManager)
    ours.model_name = "vcast_qwen3_vl"
    assert built_inside(ours) and ours.model_name == "llava_vid"  # e.g. --model_args ...,prompts=llava_vid
    theirs = TaskManager.__new__(TaskManager)
    theirs.model_name = "qwen3_vl"
    del ours
    assert not built_inside(theirs) and theirs.model_name == "qwen3_vl"


def test_reproduce_passes_through_as_a_config_field(cli):
    root, _, _ = cli
    authors, _ = _stats(root, "authors")
    default, _ = _stats(root, "qwen3_vl-chat-vcast")
    assert sorted(authors) == sorted(default)
    for doc_id, line in authors.items():
        assert line["config"]["reproduce"] == "authors" and default[doc_id]["config"]["reproduce"] is None
        assert line["prefill_length_before"] == default[doc_id]["prefill_length_before"]
