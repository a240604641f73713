"""Errors raised by vcast. Every one says what went wrong and what to do about it."""


class VCastError(ValueError):
    """Base class of every error vcast raises on purpose."""


class ConfigError(VCastError):
    """A configuration value is out of range or of the wrong type."""


class InputError(VCastError):
    """Features, grids or other inputs are malformed (empty, NaN, wrong rank, mismatched)."""


class UnsupportedModelError(VCastError):
    """The model's architecture has no vcast adapter."""


class VideoDecodeError(VCastError):
    """A video file is missing, corrupt, or has no decodable frames."""


class ReproduceError(VCastError):
    """A ``reproduce=`` mode cannot run here: the published code it follows fails (crashes or
    refuses) on this input or ratio. The message says where the original stops; ``reproduce=None``
    runs vcast's version, which has no such limit."""
