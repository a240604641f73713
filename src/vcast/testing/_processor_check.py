"""Processor helpers shared by the tiny-model families of :mod:`vcast.testing`."""

from __future__ import annotations


class VideoProcessorCheck:
    """Mixin letting a transformers processor accept vcast's torch-only video processors.

    ``ProcessorMixin.__init__`` looks the expected base class up through ``transformers.VideoProcessorMixin``,
    which transformers only exports when torchvision is installed; this checks against the class itself.
    """

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor":
            from transformers.video_processing_utils import VideoProcessorMixin

            if not isinstance(argument, VideoProcessorMixin):
                raise TypeError(f"video_processor must be a VideoProcessorMixin, got {type(argument).__name__}")
            return VideoProcessorMixin
        return super().check_argument_for_proper_class(argument_name, argument)


class SavedAsStock:
    """Mixin for vcast's torch-only processor ports: they save as the transformers class they port.

    The ``video_processor_type`` / ``image_processor_type`` of a saved ``processor_config.json`` names the
    class ``AutoProcessor.from_pretrained`` builds, so a saved tiny model folder loads with stock
    transformers (where torchvision is installed) exactly like a hub checkpoint; the torch-only port is
    a detail of the machine that wrote it. A port is named ``Torch`` + the class it ports; a subclass
    with another name sets ``stock_name``.
    """

    stock_name: str | None = None

    def to_dict(self):
        out = super().to_dict()
        for key in ("video_processor_type", "image_processor_type"):
            if key in out:
                out[key] = self.stock_name or type(self).__name__.removeprefix("Torch")
        return out
