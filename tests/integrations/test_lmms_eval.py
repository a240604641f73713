"""vcast.integrations.lmms_eval without lmms-eval: options, ids, prompt checks and the per-sample stats.

The real ``lmms_eval`` CLI runs in ``test_lmms_eval_cli.py`` (skipped where lmms-eval is not installed).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import vcast
import vcast.testing as vt
from vcast.errors import ConfigError, VCastError
from vcast.integrations import lmms_eval as le
from vcast.integrations.lmms_eval_stats import StatsRecorder, assign_videos_to_rows, rank_path


def test_importing_the_integration_does_not_import_lmms_eval():
    import subprocess
    import sys

    code = "import sys, vcast.integrations.lmms_eval, vcast.integrations.lmms_eval_stats; print('lmms_eval' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_offered_bases_and_model_types():
    assert le.offered_bases() == ["qwen3_vl", "qwen2_5_vl", "qwen2_vl", "llava_hf", "qwen3_5"]
    assert le.base_for_model_type("qwen3_vl_moe") == "qwen3_vl"
    assert le.base_for_model_type("qwen3_5_moe") == "qwen3_5"
    for pruned_elsewhere in ("glm4v", "gemma4", "internvl"):  # vcast prunes them; lmms-eval's classes are not offered
        with pytest.raises(ConfigError, match="no lmms-eval base"):
            le.base_for_model_type(pruned_elsewhere)
    assert le.base_for_model_type("llava_onevision") == "llava_hf"
    with pytest.raises(ConfigError, match="base="):
        le.base_for_model_type("gpt2")
    assert le.model_id("qwen2_5_vl") == "vcast_qwen2_5_vl"
    assert {"vcast", "vcast_qwen3_vl", "vcast_llava_hf"} <= le.own_model_ids()


def test_split_options_builds_the_method_config_and_passes_the_rest():
    cfg, rest = le.split_options("vcast", {"pretrained": "x", "retain_ratio": 0.15, "temperature": 0.5,
                                           "max_num_frames": 64})
    assert cfg == vcast.VCastConfig(retain_ratio=0.15, temperature=0.5)
    assert rest == {"pretrained": "x", "max_num_frames": 64}
    cfg, rest = le.split_options("evs", {"retain_ratio": 1, "fps": 2})
    assert cfg.method == "evs" and cfg.retain_ratio == 1 and rest == {"fps": 2}
    assert le.split_options("none", {"pretrained": "x"}) == (None, {"pretrained": "x"})
    cfg, _ = le.split_options("vcast", {"reproduce": "authors", "retain_ratio": 0.15})
    assert cfg == vcast.VCastConfig(retain_ratio=0.15, reproduce="authors")


def test_split_options_errors():
    with pytest.raises(ConfigError, match="retain_ratio"):
        le.split_options("vcast", {"retain_ratio": 2.0})  # validated before any model loads
    with pytest.raises(ConfigError, match="method must be one of"):
        le.split_options("v_cast", {})
    with pytest.raises(ConfigError, match=r"\['retain_ratio'\] do not belong to no pruning method"):
        le.split_options("none", {"retain_ratio": 0.25})
    with pytest.raises(ConfigError, match=r"\['temperature'\] do not belong to method 'evs'"):
        le.split_options("evs", {"temperature": 0.7})
    with pytest.raises(ConfigError, match="taken by both"):
        le.split_options("vcast", {"seed": 1}, base_params={"seed", "pretrained"})


def test_split_options_passes_an_other_methods_option_the_base_takes():
    cfg, rest = le.split_options("evs", {"temperature": 0.2}, base_params={"temperature"})
    assert cfg.method == "evs" and rest == {"temperature": 0.2}


def _task(name, model_name, blocks):
    task = SimpleNamespace(model_name=model_name, config=SimpleNamespace(task=name, lmms_eval_specific_kwargs=blocks))
    task.doc_to_visual = lambda doc: None
    return task


class _BoundTo:
    """Stands in for a task's bound ``doc_to_*`` method (only ``__self__`` is read)."""

    def __init__(self, owner):
        self.__self__ = owner


def _request(task):
    return SimpleNamespace(args=("ctx", {}, _BoundTo(task), 0, task.config.task, "test"))


def test_check_prompt_blocks():
    right = _task("a", "qwen3_vl", {"default": {}, "qwen3_vl": {"post_prompt": "x"}})
    no_block = _task("b", "vcast", {"default": {}})
    wrong = _task("c", "vcast", {"default": {}, "qwen3_vl": {"post_prompt": "x"}})
    le.check_prompt_blocks([_request(right), _request(no_block)], "qwen3_vl")
    assert len(le.request_tasks([_request(right), _request(right)])) == 1
    with pytest.raises(ConfigError, match="task 'c' has a 'qwen3_vl' prompt block but was built for model name 'vcast'"):
        le.check_prompt_blocks([_request(right), _request(wrong)], "qwen3_vl")


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError):
        le.NotAClass  # noqa: B018


def test_rank_path(tmp_path):
    p = tmp_path / "stats.jsonl"
    assert rank_path(p, 0, 1) == p
    assert rank_path(p, 3, 8) == tmp_path / "stats.rank3.jsonl"


def test_assign_videos_to_rows():
    v = [{"tokens_before": n} for n in (4, 6, 8)]
    assert assign_videos_to_rows(v, [99]) == [v]
    assert assign_videos_to_rows(v, [10, 8]) == [v[:2], v[2:]]
    assert assign_videos_to_rows(v, [4, 0, 14]) == [v[:1], [], v[1:]]
    with pytest.raises(VCastError, match="batch_size=1"):
        assign_videos_to_rows(v, [5, 13])
    with pytest.raises(VCastError, match="batch_size=1"):
        assign_videos_to_rows(v, [4, 6])


def _run(model, processor, recorder, docs, frames):
    """Read the docs through the recorder's task dict, as lmms-eval's classes do, then generate one batch."""
    task_dict = recorder.watch({"t": {"test": docs}})
    prompts = [task_dict["t"]["test"][i]["q"] for i in range(len(docs))]
    videos = [vt.random_video(f, 64, 64, seed=i) for i, f in enumerate(frames)]
    inputs = vt.make_inputs(processor, prompts, videos=videos)
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=3, do_sample=False)
    return inputs


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_stats_recorder_pruned_batch_matches_unpruned(tmp_path):
    docs = [{"q": "short"}, {"q": "a longer question"}]
    model, processor = vt.tiny_model("qwen3_vl")
    plain = StatsRecorder(model, tmp_path / "plain.jsonl")
    inputs = _run(model, processor, plain, docs, frames=[4, 8])
    plain.remove()
    handle = vcast.apply(model, retain_ratio=0.25)
    pruned = StatsRecorder(model, tmp_path / "pruned.jsonl", handle=handle, method="vcast")
    _run(model, processor, pruned, docs, frames=[4, 8])

    a, b = _lines(tmp_path / "plain.jsonl"), _lines(tmp_path / "pruned.jsonl")
    assert [(r["task"], r["split"], r["doc_id"]) for r in b] == [("t", "test", 0), ("t", "test", 1)]
    length = inputs["input_ids"].shape[1]
    for row, (u, p) in enumerate(zip(a, b)):
        assert u["method"] == "none" and u["videos"] == [] and p["method"] == "vcast"
        assert u["config"] is None and p["config"] == vcast.VCastConfig(retain_ratio=0.25).to_dict()
        assert u["prefill_length_before"] == u["prefill_length_after"] == length == p["prefill_length_before"]
        assert u["prompt_tokens_before"] == u["prompt_tokens_after"] == p["prompt_tokens_before"]
        assert u["video_tokens_before"] == u["video_tokens_after"] == p["video_tokens_before"] == [32, 64][row]
        (video,) = p["videos"]  # 2 or 4 temporal patches x 16 tokens, a quarter kept
        assert (video["tokens_before"], video["tokens_kept"]) == ([32, 64][row], [8, 16][row])
        dropped = p["video_tokens_before"] - p["video_tokens_after"]
        assert dropped == video["tokens_before"] - video["tokens_kept"]
        assert p["prompt_tokens_after"] == p["prompt_tokens_before"] - dropped
        assert p["batch_rows"] == 2
    # rows keep their left padding: the batch shrinks by the smallest row drop
    dropped = [r["prompt_tokens_before"] - r["prompt_tokens_after"] for r in b]
    assert b[0]["prefill_length_after"] == b[1]["prefill_length_after"] == length - min(dropped) < length
    assert pruned.records == 2 and not pruned.reads


def test_stats_recorder_llava_counts_the_newline_and_skips_decode_steps(tmp_path):
    model, processor = vt.tiny_model("llava_onevision")
    handle = vcast.apply(model, retain_ratio=0.25)
    rec = StatsRecorder(model, tmp_path / "s.jsonl", handle=handle, method="vcast")
    _run(model, processor, rec, [{"q": "what?"}], frames=[4])
    (line,) = _lines(tmp_path / "s.jsonl")  # one line: the 2 decode steps write nothing
    assert line["videos"][0]["tokens_before"] == 64 and line["videos"][0]["tokens_kept"] == 16
    assert (line["video_tokens_before"], line["video_tokens_after"]) == (65, 17)  # + the kept newline token
    assert line["prompt_tokens_before"] - line["prompt_tokens_after"] == 48


def test_doc_read_log_passes_everything_else_through():
    reads = []
    rec = SimpleNamespace(reads=reads)
    log = StatsRecorder.watch(rec, {"t": {"test": ["d0", "d1"], "val": ["v"]}})
    splits = log["t"]
    assert "test" in splits and len(splits) == 2 and sorted(splits) == ["test", "val"]
    docs = splits["test"]
    assert len(docs) == 2 and list(docs) == ["d0", "d1"] and docs[1] == "d1" and docs[0:1] == ["d0"]
    assert reads == [("t", "test", 1)]  # slices and iteration are not document reads
