"""transformers' video processors with their pixel operations in plain torch (no torchvision).

transformers' video processors resize, crop and normalise with torchvision, and no torchvision build on
PyPI matches the CPU-only torch wheels. :class:`TorchPixelOps` supplies those operations with the torch
calls torchvision's v2 functional ops make themselves (``F.interpolate(..., antialias=True)``, uint8-native
where torch has the kernel, ``(x - mean) / std``, zero padding and slicing for the centre crop).

- Where transformers' module imports without torchvision, the port is its class with :class:`TorchPixelOps`
  after it in the MRO (so the family's own ``resize`` still computes the target size):
  :class:`TorchGlm4vVideoProcessor`, :class:`TorchLlavaNextVideoVideoProcessor`, :class:`TorchMolmo2VideoProcessor`,
  :class:`TorchSmolVLMVideoProcessor`, :class:`TorchMiniCPMV4_6VideoProcessor`.
- Where the module imports torchvision at load time (Gemma 4, InternVL, VideoLLaMA3), its rules are rebuilt
  on ``BaseVideoProcessor``: the same class defaults, target sizes, patch layout and extra outputs.

Every port saves under the name of the class it ports (``SavedAsStock``), so a saved tiny model loads
with stock ``AutoProcessor`` where torchvision is installed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_transforms import get_resize_output_image_size, get_size_with_aspect_ratio
from transformers.image_utils import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    ChannelDimension,
    PILImageResampling,
    SizeDict,
    get_image_size_for_max_height_width,
)
from transformers.models.glm4v.video_processing_glm4v import Glm4vVideoProcessor
from transformers.models.llava_next_video.video_processing_llava_next_video import (
    LlavaNextVideoVideoProcessor,
)
from transformers.models.minicpmv4_6.video_processing_minicpmv4_6 import MiniCPMV4_6VideoProcessor
from transformers.models.molmo2.image_processing_molmo2 import Molmo2ImageProcessor
from transformers.models.molmo2.video_processing_molmo2 import Molmo2VideoProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize
from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor
from transformers.processing_utils import VideosKwargs
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import convert_to_rgb, group_videos_by_shape, reorder_videos

from vcast.testing._processor_check import SavedAsStock

_MODES = {PILImageResampling.BICUBIC: "bicubic", PILImageResampling.BILINEAR: "bilinear",
          PILImageResampling.NEAREST: "nearest"}


def resize_pixels(image: torch.Tensor, height: int, width: int, resample=None, antialias: bool = True) -> torch.Tensor:
    """Resize ``image[..., C, H, W]`` to ``(height, width)`` as torchvision's v2 ``resize`` does.

    uint8 stays uint8 through torch's native kernel on CPU (bicubic, and bilinear with AVX2) and goes
    through float with clamp-and-round elsewhere, like torchvision.
    """
    if resample == PILImageResampling.LANCZOS:
        return _resize_lanczos(image, height, width)
    mode = _MODES.get(resample if resample is not None else PILImageResampling.BILINEAR)
    if mode is None:
        raise ValueError(f"the torch-only resize supports {sorted(m.name for m in (*_MODES, PILImageResampling.LANCZOS))}, got {resample!r}")
    if tuple(image.shape[-2:]) == (height, width):
        return image
    lead, dtype = image.shape[:-3], image.dtype
    native_uint8 = mode == "nearest" or (image.device.type == "cpu" and (
        mode == "bicubic" or torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")))
    x = image.reshape(-1, *image.shape[-3:])
    cast = dtype not in (torch.float32, torch.float64) and not (dtype == torch.uint8 and native_uint8)
    if cast:
        x = x.float()
    extra = {} if mode == "nearest" else {"align_corners": False, "antialias": antialias}
    x = F.interpolate(x, size=(height, width), mode=mode, **extra)
    if cast:
        if dtype == torch.uint8:
            x = x.clamp_(0, 255)
        x = x.round_().to(dtype)
    return x.reshape(*lead, *x.shape[-3:])


def _resize_lanczos(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """LANCZOS resize of uint8 ``image[..., 3, H, W]`` on CPU, frame by frame through PIL (as torchvision >= 0.27
    does on CPU, and as the families' PIL image processors do)."""
    from PIL import Image

    if image.dtype != torch.uint8 or image.device.type != "cpu":
        raise ValueError("the torch-only LANCZOS resize takes uint8 frames on the CPU (resize before rescaling)")
    if tuple(image.shape[-2:]) == (height, width):
        return image
    frames = image.reshape(-1, *image.shape[-3:]).permute(0, 2, 3, 1).contiguous().numpy()
    out = [torch.from_numpy(np.array(Image.fromarray(f).resize((width, height), Image.LANCZOS))) for f in frames]
    return torch.stack(out).permute(0, 3, 1, 2).reshape(*image.shape[:-2], height, width)


class _VideoLlama3Kwargs(VideosKwargs, total=False):
    patch_size: int
    temporal_patch_size: int
    merge_size: int
    min_frames: int
    max_frames: int
    use_token_compression: bool


class _Gemma4Kwargs(VideosKwargs, total=False):
    patch_size: int
    max_soft_tokens: int
    pooling_kernel_size: int


class TorchPixelOps(TorchvisionBackend):
    """The torchvision backend's pixel operations written in plain torch."""

    def convert_to_rgb(self, video: torch.Tensor, input_data_format=None) -> torch.Tensor:
        """``[..., C, H, W]`` -> 3 channels (grey replicated; alpha composited by transformers)."""
        if video.shape[-3] == 1:
            return video.expand(*video.shape[:-3], 3, *video.shape[-2:]).contiguous()
        return convert_to_rgb(video, input_data_format=ChannelDimension.FIRST)

    def resize(self, image: torch.Tensor, size: SizeDict, resample=None, antialias: bool = True, **kwargs):
        """Resize ``[..., C, H, W]`` to ``size`` (``height/width``, ``shortest_edge[/longest_edge]`` or ``max_*``)."""
        if size.shortest_edge and size.longest_edge:
            new = get_size_with_aspect_ratio(image.shape[-2:], size.shortest_edge, size.longest_edge)
        elif size.shortest_edge:
            new = get_resize_output_image_size(image, size=size.shortest_edge, default_to_square=False,
                                               input_data_format=ChannelDimension.FIRST)
        elif size.max_height and size.max_width:
            new = get_image_size_for_max_height_width(image.shape[-2:], size.max_height, size.max_width)
        elif size.height and size.width:
            new = (size.height, size.width)
        else:
            raise ValueError(f"cannot tell the target size from {size}")
        return resize_pixels(image, int(new[0]), int(new[1]), resample, antialias)

    def normalize(self, image: torch.Tensor, mean, std, inplace: bool = False, **kwargs) -> torch.Tensor:
        """``(image - mean) / std`` per channel (channel dim -3)."""
        mean = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        std = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
        return image.sub_(mean).div_(std) if inplace else (image - mean) / std

    def center_crop(self, image: torch.Tensor, size: SizeDict, **kwargs) -> torch.Tensor:
        """Crop the centre ``size.height x size.width`` (zero-padding first if the image is smaller)."""
        h, w = image.shape[-2:]
        ch, cw = size.height, size.width
        if ch > h or cw > w:
            pad = [max(cw - w, 0) // 2, (max(cw - w, 0) + 1) // 2, max(ch - h, 0) // 2, (max(ch - h, 0) + 1) // 2]
            image = F.pad(image, pad, value=0)
            h, w = image.shape[-2:]
        top, left = int((h - ch) / 2.0), int((w - cw) / 2.0)
        return image[..., top:top + ch, left:left + cw]


class TorchGlm4vVideoProcessor(SavedAsStock, Glm4vVideoProcessor, TorchPixelOps):
    """transformers' ``Glm4vVideoProcessor`` (GLM-4.1V / 4.5V; also GLM-4.6V's rules without frame sampling)."""

    convert_to_rgb = TorchPixelOps.convert_to_rgb


class TorchLlavaNextVideoVideoProcessor(SavedAsStock, LlavaNextVideoVideoProcessor, TorchPixelOps):
    """transformers' ``LlavaNextVideoVideoProcessor``: shortest-edge resize, centre crop, CLIP normalisation."""

    convert_to_rgb = TorchPixelOps.convert_to_rgb


class TorchMolmo2VideoProcessor(SavedAsStock, Molmo2VideoProcessor, TorchPixelOps):
    """transformers' ``Molmo2VideoProcessor``: every frame resized to a square crop, patchified, pooling indices."""

    convert_to_rgb = TorchPixelOps.convert_to_rgb


class TorchMolmo2ImageProcessor(SavedAsStock, Molmo2ImageProcessor, TorchPixelOps):
    """transformers' ``Molmo2ImageProcessor`` (torchvision backend) with the torch pixel ops."""

    convert_to_rgb = TorchPixelOps.convert_to_rgb


class TorchSmolVLMVideoProcessor(SavedAsStock, SmolVLMVideoProcessor, TorchPixelOps):
    """transformers' ``SmolVLMVideoProcessor``: longest-edge resize, then a square ``max_image_size`` resize (LANCZOS by
    default, through PIL), padding to the batch's largest video with ``pixel_attention_mask``."""

    convert_to_rgb = TorchPixelOps.convert_to_rgb


class TorchMiniCPMV4_6VideoProcessor(SavedAsStock, MiniCPMV4_6VideoProcessor, TorchPixelOps):
    """transformers' ``MiniCPMV4_6VideoProcessor``: every frame an overview plus slices, NaViT-packed patches."""

    convert_to_rgb = TorchPixelOps.convert_to_rgb


class TorchInternVLVideoProcessor(SavedAsStock, BaseVideoProcessor, TorchPixelOps):
    """InternVL's video processor rules (transformers' ``InternVLVideoProcessor``): every frame resized to
    ``size`` (default 384x384), CLIP-normalised; ``pixel_values_videos`` is ``[videos, T, 3, H, W]``."""

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"height": 384, "width": 384}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    initial_shift = True
    do_sample_frames = False
    convert_to_rgb = TorchPixelOps.convert_to_rgb


class TorchVideoLlama3VideoProcessor(SavedAsStock, BaseVideoProcessor, TorchPixelOps):
    """VideoLLaMA3's video processor rules (transformers' ``VideoLlama3VideoProcessor``).

    Frames are resized with Qwen's ``smart_resize`` against a per-video pixel budget split over the frames
    (``longest_edge // T``), patchified like GLM-4V / Qwen (14 px patches, merge 2, temporal patch 1), and
    returned with ``video_grid_thw``, ``video_merge_sizes`` and ``video_compression_mask`` (the model's own
    pixel-difference token compression: a token is kept when its patch pixels changed by more than 0.1/255
    on average since the previous frame; ``use_token_compression=False`` keeps all).
    """

    resample = PILImageResampling.BICUBIC
    size = {"shortest_edge": 128 * 28 * 28, "longest_edge": 28 * 28 * 768}
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    patch_size = 14
    temporal_patch_size = 1
    merge_size = 2
    min_frames = 4
    max_frames = 180
    do_sample_frames = False
    use_token_compression = True
    return_metadata = True
    model_input_names = ["pixel_values_videos", "video_grid_thw", "video_merge_sizes", "video_compression_mask"]
    valid_kwargs = _VideoLlama3Kwargs
    patchify = Glm4vVideoProcessor.patchify
    convert_to_rgb = TorchPixelOps.convert_to_rgb

    def resize(self, videos: torch.Tensor, size: SizeDict, resample=None, factor: int | None = None, **kwargs):
        if factor is None:  # a plain resize call
            return TorchPixelOps.resize(self, videos, size, resample)
        height, width = smart_resize(videos.shape[-2], videos.shape[-1], factor=factor,
                                     min_pixels=size.shortest_edge, max_pixels=size.longest_edge // videos.shape[1])
        return resize_pixels(videos, height, width, resample)

    def _preprocess(self, videos, do_resize, size, resample, do_rescale, rescale_factor, do_normalize, image_mean,
                    image_std, patch_size=None, temporal_patch_size=None, merge_size=None,
                    use_token_compression=None, return_tensors=None, **kwargs):
        grouped, index = group_videos_by_shape(videos)
        patches, grids = {}, {}
        for shape, stacked in grouped.items():
            if do_resize:
                stacked = self.resize(stacked, size=size, resample=resample, factor=patch_size * merge_size)
            stacked = self.rescale_and_normalize(stacked, do_rescale, rescale_factor, do_normalize, image_mean,
                                                 image_std)
            patches[shape], t, h, w = self.patchify(stacked, patch_size, merge_size, temporal_patch_size)
            grids[shape] = [[t, h, w]] * len(stacked)
        pixels = torch.cat(reorder_videos(patches, index), dim=0)
        grid_thw = torch.tensor(reorder_videos(grids, index))
        merge = torch.full((grid_thw.shape[0],), merge_size, dtype=grid_thw.dtype)
        if use_token_compression:
            mask = torch.cat([self.compression_mask(p, g, merge_size)
                              for p, g in zip(pixels.split(grid_thw.prod(-1).tolist()), grid_thw.tolist())])
        else:
            mask = torch.ones(int(grid_thw.prod(-1).sum()) // merge_size**2, dtype=torch.bool)
        return BatchFeature(data={"pixel_values_videos": pixels, "video_grid_thw": grid_thw,
                                  "video_merge_sizes": merge, "video_compression_mask": mask},
                            tensor_type=return_tensors)

    @staticmethod
    def compression_mask(patches: torch.Tensor, grid: list[int], merge: int, threshold: float = 0.1,
                         min_tokens: int = 1) -> torch.Tensor:
        """``BoolTensor[T * N]`` of one video: tokens whose pixels moved since the previous frame (first frame all)."""
        t, h, w = grid
        n = (h // merge) * (w // merge)
        if t == 1:
            return torch.ones(n, dtype=torch.bool)
        frames = patches.view(t, n, -1)
        diff = (frames[1:] - frames[:-1]).abs().mean(-1) * 255
        keep = torch.cat([torch.ones(1, n, dtype=torch.bool), diff > threshold])
        short = keep.sum(1) < min_tokens
        keep[short, :min_tokens] = True
        return keep.flatten()


class TorchGemma4VideoProcessor(SavedAsStock, BaseVideoProcessor, TorchPixelOps):
    """Gemma 4's video processor rules (transformers' ``Gemma4VideoProcessor``).

    Each frame is resized, keeping its aspect ratio, to the largest size with at most
    ``max_soft_tokens * k**2`` patches whose sides are multiples of ``k * patch_size`` (k the pooling
    kernel), cut into ``patch_size`` patches (row-major, each ``(y, x, channel)``-flattened), zero-padded
    to ``max_soft_tokens * k**2`` patches. Outputs ``pixel_values_videos`` ``[sum T, max_patches, 3*p*p]``,
    ``video_position_ids`` (``(x, y)`` of each patch, ``(-1, -1)`` on padding), ``num_frames_per_video``
    and ``num_soft_tokens_per_video`` (tokens per frame, for the prompt).
    """

    resample = PILImageResampling.BICUBIC
    image_mean = [0.0, 0.0, 0.0]
    image_std = [1.0, 1.0, 1.0]
    size = None
    default_to_square = True
    do_convert_rgb = True
    do_resize = True
    do_rescale = True
    do_normalize = True
    num_frames = 32
    do_sample_frames = True
    patch_size = 16
    max_soft_tokens = 70
    pooling_kernel_size = 3
    model_input_names = ["pixel_values_videos", "video_position_ids", "num_frames_per_video"]
    valid_kwargs = _Gemma4Kwargs
    supported_soft_tokens = (70, 140, 280, 560, 1120)
    convert_to_rgb = TorchPixelOps.convert_to_rgb

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.max_soft_tokens not in self.supported_soft_tokens:
            raise ValueError(f"max_soft_tokens must be one of {self.supported_soft_tokens}, got {self.max_soft_tokens}")

    def _validate_preprocess_kwargs(self, **kwargs):
        kwargs["do_resize"] = False  # the size comes from the patch budget, not from `size`
        super()._validate_preprocess_kwargs(**kwargs)

    @staticmethod
    def target_size(height: int, width: int, patch: int, max_patches: int, kernel: int) -> tuple[int, int]:
        """The aspect-preserving frame size for the patch budget (sides multiples of ``kernel * patch``)."""
        factor = math.sqrt(max_patches * patch**2 / (height * width))
        side = kernel * patch
        th, tw = int(math.floor(factor * height / side)) * side, int(math.floor(factor * width / side)) * side
        longest = (max_patches // kernel**2) * side
        if th == 0 and tw == 0:
            raise ValueError(f"cannot resize {height}x{width} for {max_patches} patches of {patch} px")
        if th == 0:
            th, tw = side, min(int(math.floor(width / height)) * side, longest)
        elif tw == 0:
            th, tw = min(int(math.floor(height / width)) * side, longest), side
        return th, tw

    def _preprocess(self, videos, do_resize, resample, do_rescale, rescale_factor, do_normalize, image_mean,
                    image_std, return_tensors=None, patch_size=None, max_soft_tokens=None, pooling_kernel_size=None,
                    **kwargs):
        if max_soft_tokens not in self.supported_soft_tokens:
            raise ValueError(f"max_soft_tokens must be one of {self.supported_soft_tokens}, got {max_soft_tokens}")
        p, k = patch_size, pooling_kernel_size
        max_patches = max_soft_tokens * k**2
        pixels, positions, tokens, frames = [], [], [], []
        for video in videos:
            if do_resize:
                th, tw = self.target_size(video.shape[-2], video.shape[-1], p, max_patches, k)
                video = resize_pixels(video, th, tw, resample)
            video = self.rescale_and_normalize(video, do_rescale, rescale_factor, do_normalize, image_mean, image_std)
            t, c, h, w = video.shape
            gh, gw = h // p, w // p
            patches = video.reshape(t, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1).reshape(t, gh * gw, -1)
            ys, xs = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
            xy = torch.stack([xs, ys], dim=-1).reshape(1, gh * gw, 2).repeat(t, 1, 1)
            pad = max_patches - gh * gw
            pixels.append(F.pad(patches, (0, 0, 0, pad)))
            positions.append(F.pad(xy, (0, 0, 0, pad), value=-1))
            tokens.append(gh * gw // k**2)
            frames.append(t)
        data = {"pixel_values_videos": torch.cat(pixels), "video_position_ids": torch.cat(positions),
                "num_frames_per_video": torch.tensor(frames), "num_soft_tokens_per_video": tokens}
        return BatchFeature(data=data, tensor_type=return_tensors)

