"""Typed, validated configuration objects.

Every pruning method has a config dataclass deriving from :class:`MethodConfig`; V-CAST's is
:class:`VCastConfig`. Configs are plain data: they validate on construction, round-trip through
``to_dict()`` / ``from_dict()`` and can be copied with overrides via ``replace(**kw)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from vcast.errors import ConfigError

_PRUNE_AT = re.compile(r"^(llm|vision:(\d+))$")


def _check_ratio(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a number in (0, 1], got {value!r}")
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}; 1.0 keeps every token")


@dataclass(frozen=True)
class MethodConfig:
    """Options shared by every pruning method.

    Attributes:
        retain_ratio: fraction of each video's tokens that reach the LLM, in (0, 1], or ``"auto"``:
            the adaptive-ratio rule (:func:`vcast.core.select.adaptive_ratios`) picks a ratio per
            video in ``[min_ratio, max_ratio]`` from how much its frame trajectory moves, and the
            method then runs at that ratio (every method; ``Selection.retain_ratio`` reports it).
        positions: ``"original"`` keeps each kept token's original position id (coordinate
            preserving); ``"compact"`` renumbers the pruned sequence (1-D RoPE models only).
        prune_at: ``"llm"`` prunes the post-merger tokens before the LLM; ``"vision:k"`` estimates
            the selection after vision block k and drops tokens before the remaining blocks
            (models that support it).
        seed: seed for methods with randomness.
        min_ratio, max_ratio: the range of ``retain_ratio="auto"``.
        reproduce: ``None`` (default): the method on equal terms with every other vcast method
            (exactly ``K = round(T*N*r)`` tokens, deterministic ties). ``"authors"``: the method as
            its authors' published code runs it (its own token counts, rounding, tie-breaking and
            arithmetic dtype); ``"vllm"``: as vLLM's port runs it at ``video_pruning_rate =
            1 - retain_ratio``. Only the modes in the method's :attr:`REPRODUCE_MODES` are accepted;
            each method module documents what its modes do and where they differ from the default.
    """

    method: ClassVar[str] = "base"
    # The reproduce= modes this method implements (a subclass lists its own).
    REPRODUCE_MODES: ClassVar[tuple[str, ...]] = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> MethodConfig:
        # Runs before the dataclass __init__, so a misspelt option is a ConfigError, not a raw TypeError.
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(names))
        if unknown or len(args) > len(names):
            hints = [f"{u!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(u, names, 1))
                     else repr(u) for u in unknown]
            what = f"unknown option(s) {', '.join(hints)}" if unknown else f"{len(args)} positional values"
            raise ConfigError(f"{cls.__name__} got {what}; valid options: {names}")
        return super().__new__(cls)

    retain_ratio: float | Literal["auto"] = 0.25
    positions: Literal["original", "compact"] = "original"
    prune_at: str = "llm"
    seed: int = 0
    min_ratio: float = 0.1
    max_ratio: float = 0.5
    reproduce: Literal["authors", "vllm"] | None = None

    def __post_init__(self) -> None:
        self._validate_ratio()
        if self.positions not in ("original", "compact"):
            raise ConfigError(f"positions must be 'original' or 'compact', got {self.positions!r}")
        if not isinstance(self.prune_at, str) or not _PRUNE_AT.match(self.prune_at):
            raise ConfigError(f"prune_at must be 'llm' or 'vision:<block index>', got {self.prune_at!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an int, got {self.seed!r}")
        if self.reproduce is not None and self.reproduce not in self.REPRODUCE_MODES:
            offered = ", ".join(repr(m) for m in self.REPRODUCE_MODES) or "none"
            raise ConfigError(
                f"method {self.method!r} has no reproduce={self.reproduce!r} mode (its modes: {offered}); "
                "'authors' follows the authors' published code, 'vllm' vLLM's port; use reproduce=None "
                "for vcast's equal-terms version"
            )

    def _validate_ratio(self) -> None:
        if self.retain_ratio == "auto":
            _check_ratio("min_ratio", self.min_ratio)
            _check_ratio("max_ratio", self.max_ratio)
            if self.min_ratio > self.max_ratio:
                raise ConfigError(f"min_ratio ({self.min_ratio}) must be <= max_ratio ({self.max_ratio})")
        elif isinstance(self.retain_ratio, str):
            raise ConfigError(f"retain_ratio must be a number in (0, 1] or 'auto', got {self.retain_ratio!r}")
        else:
            _check_ratio("retain_ratio", self.retain_ratio)

    @property
    def is_auto(self) -> bool:
        """True when the retain ratio is chosen per video (``retain_ratio="auto"``)."""
        return self.retain_ratio == "auto"

    @property
    def vision_prune_block(self) -> int | None:
        """The vision block index of ``prune_at="vision:k"``, or None for ``"llm"``."""
        m = _PRUNE_AT.match(self.prune_at)
        return int(m.group(2)) if m and m.group(2) is not None else None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of the fields, plus ``"method"``."""
        return {"method": self.method, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        data = dict(data)
        method = data.pop("method", cls.method)
        if method != cls.method:
            raise ConfigError(f"dict is for method {method!r}, not {cls.method!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} option(s) {unknown}; valid: {sorted(names)}")
        return cls(**data)

    def replace(self, **overrides: Any) -> MethodConfig:
        """A copy with some fields changed (validated); unknown names raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unknown {type(self).__name__} option(s) {unknown}; valid: {sorted(names)}")
        return dataclasses.replace(self, **overrides)


@dataclass(frozen=True)
class VCastConfig(MethodConfig):
    """V-CAST options. The defaults are the published method.

    Attributes:
        retain_ratio: fraction of tokens kept, in (0, 1], or ``"auto"`` (see :class:`MethodConfig`;
            V-CAST computes the adaptive ratio inside its vectorised core).
        temperature: softmax temperature turning curvature into per-frame budget weights.
        min_tokens_per_frame: every frame keeps at least this many tokens (capped at N).
        curvature: ``"angle"`` (the paper: 1 - cos of consecutive velocities) or ``"robust"``
            (interpolation residual; ignores small camera shake, see ``vcast.core.curvature``).
        token_curvature_weight: weight of each token position's own temporal curvature added to
            the spatial score (0 disables; the spatio-temporal curvature tensor extension).
        reproduce: ``"authors"`` runs the published code's behaviour (``xinyouu/V-CAST``; see
            :mod:`vcast.methods.vcast_authors`); it needs ``curvature="angle"`` and
            ``token_curvature_weight=0`` (the published code has neither extension).
    """

    method: ClassVar[str] = "vcast"
    REPRODUCE_MODES: ClassVar[tuple[str, ...]] = ("authors",)

    retain_ratio: float | Literal["auto"] = 0.25
    temperature: float = 0.7
    min_tokens_per_frame: int = 1
    curvature: Literal["angle", "robust"] = "angle"
    token_curvature_weight: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ConfigError(f"temperature must be a finite number > 0, got {t!r}")
        m = self.min_tokens_per_frame
        if isinstance(m, bool) or not isinstance(m, int) or m < 0:
            raise ConfigError(f"min_tokens_per_frame must be an int >= 0, got {m!r}")
        from vcast.core.curvature import CURVATURES

        if self.curvature not in CURVATURES:
            raise ConfigError(f"curvature must be one of {sorted(CURVATURES)}, got {self.curvature!r}")
        w = self.token_curvature_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"token_curvature_weight must be a finite number >= 0, got {w!r}")
        if self.reproduce == "authors" and (self.curvature != "angle" or w > 0):
            raise ConfigError(
                "reproduce='authors' runs the published V-CAST code, which has only the paper's angle "
                f"curvature and no token curvature; got curvature={self.curvature!r}, "
                f"token_curvature_weight={w!r}. Drop reproduce= to use these extensions"
            )
