"""vLLM end to end on CPU: tiny saved Qwen3-VL and Qwen2.5-VL served by ``vllm.LLM`` with a video.

Needs vLLM (the CI's vLLM step builds its own environment: see ``.ci/run``); elsewhere these tests
are skipped, unless ``VCAST_REQUIRE_VLLM=1`` makes a missing vLLM an error. Four configurations, one
process each (vLLM configures plugins per process): stock vLLM (vcast's plugin not loaded), the
plugin installed but off, vLLM's EVS with vcast's workarounds, and V-CAST through the plugin.
"""

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vcast
from vcast.integrations.vllm import compute_retained_tokens_count
from vcast.integrations.vllm.workarounds import hide_outer_vision_starts

if os.environ.get("VCAST_REQUIRE_VLLM") != "1":
    pytest.importorskip("vllm", reason="vLLM is not installed (the CI's vLLM step runs these tests)")

Q = 0.8  # vLLM's pruning rate: vcast keeps round(64 * 0.2) = 13 of 64 tokens, vLLM's EVS max(16, 12) = 16
FRAMES, TOKENS = 4, 16  # 8 frames of 64x64: 4 temporal patches of 4x4 merged tokens
MODEL_TYPES = ("qwen3_vl", "qwen2_5_vl")
RUNNER = Path(__file__).with_name("_engine_run.py")


def save_tiny(model_type: str, path: Path) -> Path:
    """A tiny random Qwen-VL saved as a model folder vLLM loads (hidden 128: head_dim 32 for CPU attention)."""
    model, processor = vcast.testing.tiny_model(model_type, hidden_size=128)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    # The tiny processors save vcast's torch-only video processor class; name transformers' own one
    # (same preprocessing) so stock AutoProcessor, which vLLM uses, loads the folder.
    cfg_path = path / "processor_config.json"
    cfg = json.loads(cfg_path.read_text())
    video = cfg.get("video_processor", {})
    if video.get("video_processor_type", "").startswith("Torch"):
        video["video_processor_type"] = video["video_processor_type"][len("Torch"):]
        cfg_path.write_text(json.dumps(cfg, indent=2))
    return path


def _stock_plugins() -> str:
    return ",".join(e.name for e in importlib.metadata.entry_points(group="vllm.general_plugins") if e.name != "vcast")


CONFIGS = {
    "stock": (0.0, {"VLLM_PLUGINS": None}),  # filled in below: every general plugin but vcast's
    "off": (0.0, {}),
    "evs": (Q, {"VCAST_VLLM_FIXES": "1"}),
    "vcast": (Q, {"VCAST_VLLM_METHOD": "vcast"}),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{config: results}`` of _engine_run.py, plus ``records``: the masks vcast computed in the worker."""
    root = tmp_path_factory.mktemp("vllm")
    models = {mt: str(save_tiny(mt, root / mt)) for mt in MODEL_TYPES}
    out = {}
    for name, (q, extra) in CONFIGS.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("VCAST_VLLM_")}
        env.update(extra, VLLM_CPU_KVCACHE_SPACE="1")
        if name == "stock":
            env["VLLM_PLUGINS"] = _stock_plugins()
        if name == "vcast":
            env["VCAST_VLLM_RECORD"] = str(root / "records")
        path = root / f"{name}.json"
        proc = subprocess.run([sys.executable, str(RUNNER), "--models", json.dumps(models), "--q", str(q),
                               "--out", str(path)], env=env, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, f"{name} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        out[name] = json.loads(path.read_text())
    out["records"] = [torch.load(p) for p in sorted((root / "records").glob("*.pt"))]
    return out


def _video_tokens(request) -> int:
    return request["prompt_token_ids"].count(vcast.testing.qwen.TOKEN_ID["<|video_pad|>"])


@pytest.mark.parametrize("model", MODEL_TYPES)
def test_plugin_off_is_stock_vllm(runs, model):
    assert runs["off"][model]["requests"] == runs["stock"][model]["requests"]  # ids, tokens, logprobs
    assert runs["off"]["_seams"] == runs["stock"]["_seams"] and all(runs["off"]["_seams"].values())
    assert runs["off"][model]["prefix_caching"] and runs["stock"][model]["prefix_caching"]
    assert _video_tokens(runs["off"][model]["requests"][0]) == FRAMES * TOKENS


@pytest.mark.parametrize("model", MODEL_TYPES)
def test_vllms_evs_with_the_workarounds(runs, model):
    from vllm.multimodal.video_prune import evs

    first, second = runs["evs"][model]["requests"]
    assert _video_tokens(first) == evs.compute_retained_tokens_count(TOKENS, FRAMES, Q) == 16
    assert first["finish_reason"] == "length" and len(first["token_ids"]) == 6
    assert second == first  # same request again: same tokens and logprobs (prefix caching is off)
    assert runs["evs"][model]["prefix_caching"] is False


@pytest.mark.parametrize("model", MODEL_TYPES)
def test_vcast_through_the_plugin(runs, model):
    first, second = runs["vcast"][model]["requests"]
    assert _video_tokens(first) == compute_retained_tokens_count(TOKENS, FRAMES, Q) == 13
    assert first["finish_reason"] == "length" and len(first["token_ids"]) == 6
    assert second == first
    assert not any(runs["vcast"]["_seams"].values())  # every seam is vcast's in this process


@pytest.mark.parametrize("model, width, channels", [("qwen3_vl", 3 * 128, 128), ("qwen2_5_vl", 128, None)])
def test_kept_mask_is_vcasts_selection_on_the_same_embeddings(runs, model, width, channels):
    """The worker's mask equals vcast's V-CAST run here on the embeddings it was computed from."""
    records = [r for r in runs["records"] if r["module"].endswith(model)]
    assert records, f"no mask was recorded for {model}"
    for r in records:
        t, h, w = r["video_size_thw"]
        m = r["spatial_merge_size"]
        emb = r["video_embeds"]
        assert (t, (h // m) * (w // m)) == (FRAMES, TOKENS) and r["q"] == Q
        assert emb.shape == (FRAMES * TOKENS, width) and r["channels"] == channels  # Qwen3-VL: + 2 deepstack
        features = emb[:, : channels or width].reshape(FRAMES, TOKENS, -1)
        selection = vcast.select_tokens(features, method="vcast", retain_ratio=1.0 - Q)
        assert torch.equal(r["mask"], selection.keep_mask().reshape(-1))
        assert int(r["mask"].sum()) == 13


def test_refusals_surface_at_engine_start(tmp_path):
    """A bad setting stops vLLM when it loads the plugin, with vcast's message."""
    env = dict(os.environ, VCAST_VLLM_METHOD="pool")
    code = "from vllm.engine.arg_utils import EngineArgs; EngineArgs(model='unused')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "merges tokens" in proc.stderr


# ---------------------------------------------------------------- vLLM's own code, no engine

def test_outer_vision_start_workaround_on_vllms_position_code():
    """vLLM's Qwen3-VL position recomputation, on a pruned two-frame video written bare (B) and with the
    chat template's outer markers (A): with the outer start hidden, A's positions are B's shifted by
    the extra tokens; without, vLLM 0.32 gets A wrong."""
    from vllm.model_executor.models.qwen3_vl import Qwen3VLForConditionalGeneration as Qwen3VL

    vs, ve, video, image, ts, text = 10, 11, 12, 13, 2, 1
    media = [ts, ts, vs, video, video, ve, ts, ts, vs, video, ve]  # frame 0 keeps 2 tokens, frame 1 keeps 1
    channels = torch.zeros(5, len(media), dtype=torch.long)
    channels[0] = torch.arange(len(media))
    channels[1] = torch.arange(len(media))
    channels[2] = torch.arange(len(media))
    channels[3] = torch.tensor([t == vs for t in media])
    channels[4] = torch.tensor([t == video for t in media])
    emb = torch.cat([torch.randn(len(media), 4), channels.T.float()], dim=1)

    def positions(ids):
        initial = torch.arange(len(ids)).expand(3, -1).clone()
        _, pos, _ = Qwen3VL._recompute_mrope_positions(
            input_ids=ids, multimodal_embeddings=[emb], mrope_positions=initial, num_computed_tokens=0,
            vision_start_token_id=vs, image_token_id=image, video_token_id=video)
        return pos

    bare = [text] * 3 + media + [text] * 2
    wrapped = [text] * 3 + [vs] + media + [ve] + [text] * 2
    pb = positions(bare)
    pa = positions(hide_outer_vision_starts(wrapped, vs, ve))
    n = len(media)
    assert torch.equal(pa[:, :4], torch.arange(4).expand(3, -1))
    assert torch.equal(pa[:, 4:4 + n], pb[:, 3:3 + n] + 1)
    assert torch.equal(pa[:, 5 + n:], pb[:, 3 + n:] + 2)
    try:
        broken = positions(wrapped)
    except RuntimeError:
        broken = None
    assert broken is None or not torch.equal(broken, pa), "vLLM handles the outer marker now: update KNOWN_RELEASES"


def test_every_family_vllm_prunes_is_routed():
    """Each architecture vLLM registers that prunes video inherits one of the routed pruning methods."""
    from vllm.model_executor.models import ModelRegistry
    from vllm.model_executor.models.interfaces import supports_multimodal_pruning

    from vcast.integrations.vllm.plugin import ROUTES, routed_by

    image_only = {"CohereCompassForConditionalGeneration"}  # prunes images, not video
    # Load only the model files that can prune: they mention pruning or build on a routed module.
    keys = ("prun", *(r.module.rsplit(".", 1)[1] for r in ROUTES))
    pruning, missing = set(), []
    for arch, entry in ModelRegistry.models.items():
        module = getattr(entry, "module_name", None)
        spec = importlib.util.find_spec(module) if module else None
        if spec is None or not spec.origin or not any(k in Path(spec.origin).read_text() for k in keys):
            continue
        cls = ModelRegistry._try_load_model_cls(arch)
        if cls is None or not supports_multimodal_pruning(cls) or arch in image_only:
            continue
        pruning.add(arch)
        if routed_by(cls) is None:
            missing.append(arch)
    assert {"Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration", "Qwen3_5ForConditionalGeneration",
            "Qwen2_5_VLForConditionalGeneration", "NemotronH_Nano_VL_V2"} <= pruning
    assert not missing, f"vLLM prunes video in {missing} with code vcast does not route"
