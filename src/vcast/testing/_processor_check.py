"""Processor helper shared by the tiny-model families of :mod:`vcast.testing`."""

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
