"""The method registry contract."""

from __future__ import annotations

import pytest
import torch

import vcast
from vcast.errors import ConfigError
from vcast.methods import MethodSpec, get_method, make_config, register_method


def test_vcast_methods_registered() -> None:
    assert {"vcast", "vcast-robust"} <= set(vcast.list_methods())
    assert get_method("vcast-robust").config_cls().curvature == "robust"


def test_unknown_method_names_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match="registered"):
        get_method("nope")


def test_make_config_builds_and_overrides() -> None:
    cfg = make_config("vcast", retain_ratio=0.1)
    assert isinstance(cfg, vcast.VCastConfig) and cfg.retain_ratio == 0.1
    assert make_config("vcast", cfg, temperature=0.3).temperature == 0.3
    with pytest.raises(ConfigError, match="takes a"):
        make_config("vcast", vcast.MethodConfig())


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_method(MethodSpec("vcast", vcast.VCastConfig, lambda f, c: None))


def test_run_checks_config_type_and_batches() -> None:
    spec = get_method("vcast")
    videos = [torch.randn(4, 6, 8), torch.randn(3, 5, 8)]
    sels = spec.run(videos, vcast.VCastConfig(retain_ratio=0.5))
    assert [s.num_kept for s in sels] == [12, 8]
    with pytest.raises(ConfigError, match="needs a"):
        spec.run(videos, vcast.MethodConfig())


def test_config_dict_roundtrip_names_the_method() -> None:
    cfg = vcast.VCastConfig(retain_ratio=0.2, curvature="robust")
    data = cfg.to_dict()
    assert data["method"] == "vcast"
    assert vcast.VCastConfig.from_dict(data) == cfg
    with pytest.raises(ConfigError, match="is for method"):
        vcast.VCastConfig.from_dict({**data, "method": "evs"})
