"""vcast.apply / vcast.enabled / PruneHandle: per-instance, reversible, any registered method."""

from __future__ import annotations

import pytest
import torch
from tiny_cache import cache_of, tiny

import vcast
import vcast.testing as vt
from vcast.config import VCastConfig
from vcast.errors import ConfigError, InputError


def _inputs(processor, frames=6):
    return vt.make_inputs(processor, "What happens?", videos=[vt.random_video(frames)])


def _is_vanilla(model) -> bool:
    inner = model.model
    return not inner._forward_pre_hooks and "get_video_features" not in vars(inner) and \
        not hasattr(model, "_vcast_handle")


def test_remove_restores_vanilla_and_other_instances_stay_vanilla():
    model, processor = tiny("qwen3_vl")
    twin, _ = tiny("qwen3_vl", seed=1)
    inputs = _inputs(processor)
    ref, twin_ref = model(**inputs).logits, twin(**inputs).logits
    handle = vcast.apply(model, VCastConfig(retain_ratio=0.25))
    try:
        assert handle.active and not _is_vanilla(model) and _is_vanilla(twin)
        assert model(**inputs).logits.shape[1] < ref.shape[1]
        assert torch.equal(twin(**inputs).logits, twin_ref)  # same class, untouched instance
        assert type(model).forward is type(twin).forward
    finally:
        handle.remove()
    handle.remove()  # idempotent
    assert _is_vanilla(model) and not handle.active
    assert torch.equal(model(**inputs).logits, ref)


def test_apply_twice_warns_stacks_and_remove_restores_the_first():
    model, processor = tiny("qwen2_vl")
    inputs = _inputs(processor)
    first = vcast.apply(model, retain_ratio=0.5)
    with pytest.warns(UserWarning, match="already prunes"):
        second = vcast.apply(model, retain_ratio=0.25)
    try:
        assert not first.active and second.active and "suspended" in repr(first)
        assert len(model.model._forward_pre_hooks) == 1
        model(**inputs)
        assert second.stats["videos"][0]["ratio_used"] == pytest.approx(0.25, abs=0.02)
        with vcast.enabled(model, method="uniform", retain_ratio=0.5) as scoped:  # nesting: no warning
            assert scoped.active and not second.active
            model(**inputs)
            assert scoped.stats["method"] == "uniform"
        assert second.active and len(model.model._forward_pre_hooks) == 1
    finally:
        second.remove()
    assert first.active and len(model.model._forward_pre_hooks) == 1  # as nested enabled() does
    model(**inputs)
    assert first.stats["videos"][0]["ratio_used"] == pytest.approx(0.5, abs=0.02)
    first.remove()
    assert _is_vanilla(model)


def test_removing_a_suspended_handle_keeps_it_from_coming_back():
    model, processor = tiny("qwen2_vl")
    first = vcast.apply(model, retain_ratio=0.5)
    with pytest.warns(UserWarning):
        second = vcast.apply(model, retain_ratio=0.25)
    with pytest.raises(InputError, match="suspended"), first:  # entering a suspended handle
        pass
    assert second.active and not first.active
    first.remove()
    assert second.active and first.removed and "removed" in repr(first)
    second.remove()
    assert _is_vanilla(model)


def test_removed_handle_keeps_its_last_stats_and_with_installs_it_again():
    model, processor = tiny("qwen2_vl")
    inputs = _inputs(processor)
    ref = model(**inputs).logits
    handle = vcast.apply(model, retain_ratio=0.5)
    model(**inputs)
    kept = handle.stats["video_tokens_after"]
    handle.remove()
    assert handle.removed and handle.stats["video_tokens_after"] == kept  # the record of what it pruned
    assert torch.equal(model(**inputs).logits, ref)  # ... while the model runs vanilla
    with handle as again:  # entering a removed handle installs it for the block, with fresh stats
        assert again is handle and handle.active and handle.stats == {}
        assert model(**inputs).logits.shape[1] < ref.shape[1]
        assert handle.stats["video_tokens_after"] == kept
    assert _is_vanilla(model) and handle.removed


def test_handle_is_a_context_manager_and_cleans_up_on_error():
    model, processor = tiny("qwen2_vl")
    with pytest.raises(RuntimeError), vcast.apply(model, retain_ratio=0.5):
        raise RuntimeError("boom")
    assert _is_vanilla(model)
    with pytest.raises(RuntimeError), vcast.enabled(model, retain_ratio=0.5):
        raise RuntimeError("boom")
    assert _is_vanilla(model)


@pytest.mark.parametrize("method", vcast.list_methods())
def test_every_registered_method_runs_through_the_adapter(method):
    model, processor = tiny("qwen3_vl")
    inputs = _inputs(processor, frames=8)
    length = inputs["input_ids"].shape[1]
    with vcast.enabled(model, method=method, retain_ratio=0.25) as handle:
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
        stats = handle.stats
    dropped = stats["video_tokens_before"] - stats["video_tokens_after"]
    assert stats["method"] == method and stats["videos"][0]["method"] == method
    assert dropped > 0 and stats["prefill_length_after"] == length - dropped
    assert cache_of(out).get_seq_length() == length - dropped + 2
    assert sum(stats["videos"][0]["kept_per_frame"]) == stats["video_tokens_after"]


def test_stats_fields():
    model, processor = tiny("qwen2_5_vl")
    inputs = vt.make_inputs(processor, "Q?", videos=[vt.random_video(6), vt.random_video(4, 32, 32)])
    with vcast.enabled(model, retain_ratio=0.5) as handle:
        assert handle.stats == {}
        model(**inputs)
        stats = handle.stats
    assert stats["config"]["retain_ratio"] == 0.5 and stats["config"]["method"] == "vcast"
    first, second = stats["videos"]
    assert (first["frames"], first["tokens_per_frame"]) == (3, 16)
    assert (second["frames"], second["tokens_per_frame"]) == (2, 4)
    for video in stats["videos"]:
        assert len(video["kept_per_frame"]) == len(video["curvature"]) == video["frames"]
        assert video["ratio_used"] == pytest.approx(video["tokens_kept"] / video["tokens_before"], abs=1e-6)
    assert stats["prefill_length_before"] - stats["prefill_length_after"] == \
        stats["video_tokens_before"] - stats["video_tokens_after"]


def test_config_errors():
    model, _ = tiny("qwen2_vl")
    with pytest.raises(ConfigError):
        vcast.apply(model, retain_ratio=1.5)
    with pytest.raises(ConfigError, match="unknown pruning method"):
        vcast.apply(model, method="nope")
    with pytest.raises(ConfigError):  # a V-CAST config handed to another method
        vcast.apply(model, VCastConfig(), method="uniform")
    with pytest.raises(InputError):
        vcast.apply(model, {"retain_ratio": 0.5})
    assert _is_vanilla(model)
