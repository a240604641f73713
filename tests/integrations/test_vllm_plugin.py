"""The vLLM plugin's logic on stand-in vLLM modules (the real vLLM runs in the CI's vLLM step:
tests/integrations/vllm_engine/)."""

import logging
import sys
import types

import pytest
import torch

import vcast
from vcast.integrations.vllm import compute_retention_mask
from vcast.integrations.vllm import plugin as plugin_mod
from vcast.integrations.vllm.settings import (
    DEFECTS,
    KNOWN_RELEASES,
    Settings,
    UnsupportedVllmError,
    release_for,
)
from vcast.integrations.vllm.workarounds import hide_outer_vision_starts

QWEN3 = "vllm.model_executor.models.qwen3_vl"
QWEN25 = "vllm.model_executor.models.qwen2_5_vl"
NEMOTRON = "vllm.model_executor.models.nano_nemotron_vl"
NEMOTRON_PROC = "vllm.transformers_utils.processors.nano_nemotron_vl"
VS, VE, VIDEO = 10, 11, 12


# ---------------------------------------------------------------- settings and releases

def test_nothing_set_is_inactive_and_imports_nothing(monkeypatch):
    for name in ("VCAST_VLLM_METHOD", "VCAST_VLLM_FIXES", "VCAST_VLLM_OPTIONS", "VCAST_VLLM_RECORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "vllm", None)  # any `import vllm` would now raise
    assert not Settings.from_env().active
    plugin_mod.register()  # returns before touching vLLM
    assert not plugin_mod._ACTIVE
    assert not Settings.from_env({"VCAST_VLLM_METHOD": "off"}).active


def test_settings_from_env():
    s = Settings.from_env({"VCAST_VLLM_METHOD": "vcast-robust", "VCAST_VLLM_OPTIONS": '{"temperature": 0.5}',
                           "VCAST_VLLM_RECORD": "/tmp/x"})
    assert (s.method, s.options, s.fixes, s.record, s.active) == ("vcast-robust", {"temperature": 0.5}, True,
                                                                 "/tmp/x", True)
    s = Settings.from_env({"VCAST_VLLM_FIXES": "1"})
    assert (s.method, s.fixes, s.active) == (None, True, True)


@pytest.mark.parametrize("env, match", [
    ({"VCAST_VLLM_METHOD": "nope"}, "unknown pruning method"),
    ({"VCAST_VLLM_METHOD": "pool"}, "merges tokens"),
    ({"VCAST_VLLM_METHOD": "vcast", "VCAST_VLLM_OPTIONS": '{"retain_ratio": "auto"}'}, "cannot run inside vLLM"),
    ({"VCAST_VLLM_METHOD": "vcast", "VCAST_VLLM_OPTIONS": '{"temprature": 1}'}, "temprature"),
    ({"VCAST_VLLM_METHOD": "vcast", "VCAST_VLLM_OPTIONS": "{oops"}, "JSON object"),
    ({"VCAST_VLLM_METHOD": "vcast", "VCAST_VLLM_OPTIONS": "[1]"}, "JSON object"),
    ({"VCAST_VLLM_OPTIONS": '{"temperature": 1}'}, "name the method"),
    ({"VCAST_VLLM_RECORD": "/tmp/x"}, "needs VCAST_VLLM_METHOD"),
    ({"VCAST_VLLM_FIXES": "maybe"}, "1 or 0"),
])
def test_bad_settings(env, match):
    with pytest.raises(vcast.ConfigError, match=match):
        Settings.from_env(env)


def test_releases():
    assert release_for("0.32.0").defects == DEFECTS
    assert release_for("0.32.0+cpu") is KNOWN_RELEASES["0.32.0"]
    assert "cpu-runner-pruning-flag" not in release_for("0.34.0").defects
    with pytest.raises(UnsupportedVllmError, match=r"written for vLLM 0\.32\.0, 0\.33\.0, 0\.34\.0; this is vLLM 0\.35\.0"):
        release_for("0.35.0")
    with pytest.raises(UnsupportedVllmError):
        release_for("0.34.1.dev3+g1234")
    untested = release_for("0.35.0", allow_untested=True)
    assert untested.defects == KNOWN_RELEASES["0.34.0"].defects and "untested" in untested.checked


# ---------------------------------------------------------------- outer vision-start tokens

def test_hide_outer_vision_starts():
    # text, outer start, <t0>, frame span with 2 tokens, <t1>, empty frame span, outer end, image span
    ids = [1, VS, 2, VS, VIDEO, VIDEO, VE, 2, VS, VE, VE, 1, VS, 13, VE]
    expect = list(ids)
    expect[1] = -1
    assert hide_outer_vision_starts(ids, VS, VE) == expect
    t = torch.tensor(ids)
    out = hide_outer_vision_starts(t, VS, VE)
    assert torch.equal(out, torch.tensor(expect)) and torch.equal(t, torch.tensor(ids))  # input untouched
    bare = [1, 2, VS, VIDEO, VE, 2, VS, VE, 1, VS, 13, VE]  # a bare <|video_pad|> prompt: nothing to hide
    assert hide_outer_vision_starts(bare, VS, VE) == bare
    assert hide_outer_vision_starts([1, 2, 3], VS, VE) == [1, 2, 3]
    assert hide_outer_vision_starts([], VS, VE) == []
    assert hide_outer_vision_starts([VS, VS], VS, VE) == [-1, VS]


# ---------------------------------------------------------------- routing, on stand-in modules

def _orig_count(tokens_per_frame, num_frames, q):
    return -1


def _orig_mask(video_embeds, video_size_thw, spatial_merge_size, q):
    return None


def _module(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


class FakeEngineArgs:
    def __init__(self, enable_prefix_caching=None):
        self.enable_prefix_caching = enable_prefix_caching

    def _set_default_chunked_prefill_and_prefix_caching_args(self, model_config):
        if self.enable_prefix_caching is None:
            self.enable_prefix_caching = True


class FakeMM:
    def __init__(self, rate=0.75, method="evs"):
        self.rate, self.method = rate, method

    def is_multimodal_pruning_enabled(self):
        return bool(self.rate)

    def get_video_pruning_spec(self):
        return (self.method, self.rate) if self.rate else None


def _model_config(arch="Qwen3VLForConditionalGeneration", **mm):
    return types.SimpleNamespace(multimodal_config=FakeMM(**mm), uses_mrope=True, architectures=[arch])


@pytest.fixture
def fake_vllm(monkeypatch):
    """Stand-ins for the vLLM modules the plugin touches, wired like vLLM's (globals read at call time)."""

    class Qwen3VL:
        visual_dim = 8
        config = types.SimpleNamespace(vision_start_token_id=VS, vision_end_token_id=VE)

        def _postprocess_video_embeds_evs(self, emb, size):
            return sys.modules[QWEN3].compute_retention_mask(emb, size, spatial_merge_size=2, q=0.5)

        def recompute_mrope_positions(self, input_ids, mm, positions, num_computed_tokens):
            return input_ids

    class Qwen25VL:
        def _postprocess_video_embeds_evs(self, emb, size):
            return sys.modules[QWEN25].compute_retention_mask(emb, size, spatial_merge_size=2, q=0.5)

    class Nemotron:
        def _process_video_input(self):
            pass

    class Qwen35(Qwen3VL):  # a family built on Qwen3-VL
        pass

    class OwnPruning(Qwen25VL):  # prunes with its own code
        def _postprocess_video_embeds_evs(self, emb, size):
            return None

    class CPUModelRunner:
        def __init__(self, model):
            self.model = model
            self.model_config = types.SimpleNamespace(multimodal_config=FakeMM())
            self.is_multimodal_pruning_enabled = False

        def load_model(self, load_dummy_weights=False):
            pass

        def get_model(self):
            return self.model

    classes = {"Qwen3VLForConditionalGeneration": Qwen3VL, "Qwen2_5_VLForConditionalGeneration": Qwen25VL,
               "Qwen3_5ForConditionalGeneration": Qwen35, "OwnPruning": OwnPruning}
    registry = types.SimpleNamespace(resolve_model_cls=lambda archs, model_config: (classes[archs[0]], archs[0]))
    names = dict(compute_retained_tokens_count=_orig_count, compute_retention_mask=_orig_mask)
    mods = {
        "vllm": _module("vllm", __version__="0.32.0"),
        QWEN3: _module(QWEN3, Qwen3VLForConditionalGeneration=Qwen3VL, vidcom2_compute_retained_tokens_count=_orig_count,
                       vidcom2_compute_retention_mask=_orig_mask, **names),
        QWEN25: _module(QWEN25, Qwen2_5_VLForConditionalGeneration=Qwen25VL, **names),
        NEMOTRON: _module(NEMOTRON, NemotronH_Nano_VL_V2=Nemotron, **names),
        NEMOTRON_PROC: _module(NEMOTRON_PROC, compute_retained_tokens_count=_orig_count),
        "vllm.model_executor.models": _module("vllm.model_executor.models", ModelRegistry=registry),
        "vllm.model_executor.models.interfaces": _module("vllm.model_executor.models.interfaces",
                                                         supports_multimodal_pruning=lambda m: m == "pruning"),
        "vllm.v1.worker.cpu_model_runner": _module("vllm.v1.worker.cpu_model_runner", CPUModelRunner=CPUModelRunner),
        "vllm.engine.arg_utils": _module("vllm.engine.arg_utils", EngineArgs=FakeEngineArgs),
    }
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(mods=mods, Qwen3VL=Qwen3VL, Qwen25VL=Qwen25VL, CPUModelRunner=CPUModelRunner,
                                 originals={c: dict(vars(c)) for c in (Qwen3VL, CPUModelRunner, FakeEngineArgs)})


def _state(fake):
    mods = {name: dict(vars(mod)) for name, mod in fake.mods.items()}
    return mods, {c: dict(vars(c)) for c in fake.originals}


def test_route_and_workarounds_then_remove(fake_vllm, tmp_path):
    before = _state(fake_vllm)
    settings = Settings(method="vcast", fixes=True, record=str(tmp_path / "rec"))
    patches, release = plugin_mod.activate(settings)
    assert release.version == "0.32.0"
    q3, q25 = fake_vllm.mods[QWEN3], fake_vllm.mods[QWEN25]
    for mod, name in [(q3, "compute_retained_tokens_count"), (q3, "vidcom2_compute_retained_tokens_count"),
                      (q25, "compute_retained_tokens_count"), (fake_vllm.mods[NEMOTRON_PROC],
                                                               "compute_retained_tokens_count")]:
        assert getattr(mod, name)(tokens_per_frame=16, num_frames=4, q=0.8) == 13  # vcast's count
    assert q3.vidcom2_compute_retention_mask is q3.compute_retention_mask

    # Qwen3-VL: only the LLM's 8 channels of the 24 handed to the mask are scored.
    emb = torch.randn(4 * 16, 24, generator=torch.Generator().manual_seed(0))
    mask = fake_vllm.Qwen3VL()._postprocess_video_embeds_evs(emb, (4, 8, 8))
    assert torch.equal(mask, compute_retention_mask(emb[:, :8], (4, 8, 8), 2, 0.5))
    assert not torch.equal(mask, compute_retention_mask(emb, (4, 8, 8), 2, 0.5))
    mask25 = fake_vllm.Qwen25VL()._postprocess_video_embeds_evs(emb, (4, 8, 8))  # Qwen2.5-VL: all channels
    assert torch.equal(mask25, compute_retention_mask(emb, (4, 8, 8), 2, 0.5))
    (rec, rec25) = [torch.load(p) for p in sorted((tmp_path / "rec").iterdir())]
    assert rec["channels"] == 8 and rec25["channels"] is None and rec["module"] == QWEN3
    assert torch.equal(rec["mask"], mask) and torch.equal(rec["video_embeds"], emb)
    assert rec["video_size_thw"] == [4, 8, 8] and rec["q"] == 0.5 and rec["method"] == "vcast"

    # Workaround 1: the CPU runner enables pruning after loading a pruning model.
    runner = fake_vllm.CPUModelRunner("pruning")
    runner.load_model()
    assert runner.is_multimodal_pruning_enabled
    # Workaround 2: outer vision starts are hidden from the position recomputation.
    assert fake_vllm.Qwen3VL().recompute_mrope_positions([VS, 2, VS, VIDEO, VE, VE], [], None, 0) == \
        [-1, 2, VS, VIDEO, VE, VE]

    class NoWidth(fake_vllm.Qwen3VL):
        visual_dim = None

    with pytest.raises(vcast.UnsupportedModelError, match="NoWidth has no visual_dim"):
        NoWidth()._postprocess_video_embeds_evs(emb, (4, 8, 8))

    patches.remove()
    assert _state(fake_vllm) == before


def test_prefix_caching_is_turned_off_for_pruned_mrope_models(fake_vllm, caplog):
    patches, _ = plugin_mod.activate(Settings(method="vcast", fixes=True))
    try:
        args = FakeEngineArgs()
        with caplog.at_level(logging.WARNING, logger="vllm.vcast"):
            args._set_default_chunked_prefill_and_prefix_caching_args(_model_config())
        assert args.enable_prefix_caching is False and "prefix caching turned off" in caplog.text
        args = FakeEngineArgs()
        args._set_default_chunked_prefill_and_prefix_caching_args(_model_config(rate=None))
        assert args.enable_prefix_caching is True  # no pruning, nothing to work around
        with pytest.raises(vcast.ConfigError, match="drop the flag"):
            FakeEngineArgs(True)._set_default_chunked_prefill_and_prefix_caching_args(_model_config())
    finally:
        patches.remove()


def test_engine_config_checks(fake_vllm, caplog):
    patches, _ = plugin_mod.activate(Settings(method="vcast", fixes=True))
    try:
        def configure(**kw):
            FakeEngineArgs()._set_default_chunked_prefill_and_prefix_caching_args(_model_config(**kw))

        configure(arch="Qwen3_5ForConditionalGeneration")  # built on Qwen3-VL: routed
        with pytest.raises(vcast.ConfigError, match="--video-pruning-method vidcom2"):
            configure(method="vidcom2")
        with pytest.raises(vcast.UnsupportedModelError, match="OwnPruning prunes video with code vcast does not route"):
            configure(arch="OwnPruning")
        with caplog.at_level(logging.WARNING, logger="vllm.vcast"):
            configure(rate=None, arch="OwnPruning")  # no pruning asked: a warning, not an error
        assert "video pruning is off" in caplog.text
    finally:
        patches.remove()


def test_fixes_only_keeps_vllms_method(fake_vllm):
    fake_vllm.mods["vllm"].__version__ = "0.34.0"
    del fake_vllm.mods["vllm.v1.worker.cpu_model_runner"].CPUModelRunner  # gone in 0.34; not needed there
    patches, release = plugin_mod.activate(Settings(fixes=True))
    try:
        assert fake_vllm.mods[QWEN3].compute_retention_mask is _orig_mask
        assert fake_vllm.mods[QWEN25].compute_retained_tokens_count is _orig_count
        assert [p.rsplit(".", 1)[-1] for p in patches.applied] == [
            "recompute_mrope_positions", "_set_default_chunked_prefill_and_prefix_caching_args"]
    finally:
        patches.remove()


def test_missing_seam_refuses_and_leaves_nothing_applied(fake_vllm):
    before = _state(fake_vllm)
    del fake_vllm.mods[NEMOTRON].compute_retention_mask
    with pytest.raises(UnsupportedVllmError, match="compute_retention_mask"):
        plugin_mod.activate(Settings(method="vcast", fixes=True))
    fake_vllm.mods[NEMOTRON].compute_retention_mask = _orig_mask
    assert _state(fake_vllm) == before
    fake_vllm.mods["vllm"].__version__ = "0.99.0"
    with pytest.raises(UnsupportedVllmError, match="this is vLLM 0.99.0"):
        plugin_mod.activate(Settings(method="vcast", fixes=True))
