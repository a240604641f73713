"""Load a saved processor of the newer families where torchvision is missing (``vcast generate`` / ``viz``).

transformers builds these families' video processors (and some image processors) with torchvision; where
it is not installed, :func:`load_processor_with_ports` assembles the family's own processor class from the
same saved files with vcast's torch-only video processor port (:mod:`vcast.testing.video_ports`), the PIL
variant of the image processor, the saved tokenizer, feature extractor and chat template. Sub-processor
settings are read from ``processor_config.json`` (nested, as transformers >= 5.20 saves them) or from the
separate ``preprocessor_config.json`` / ``video_preprocessor_config.json`` files of older checkpoints.
"""

from __future__ import annotations

import json

from vcast.errors import InputError


def _ports() -> dict:
    from vcast.testing import video_ports as vp
    from vcast.testing.qwen import TorchQwen2VLVideoProcessor, TorchQwen3VLVideoProcessor

    return {
        "qwen3_5": TorchQwen3VLVideoProcessor, "qwen3_5_moe": TorchQwen3VLVideoProcessor,
        "glm4v": vp.TorchGlm4vVideoProcessor, "glm4v_moe": vp.TorchGlm4vVideoProcessor,
        "glm46v": vp.TorchGlm4vVideoProcessor, "gemma4": vp.TorchGemma4VideoProcessor,
        "llava_next_video": vp.TorchLlavaNextVideoVideoProcessor, "internvl": vp.TorchInternVLVideoProcessor,
        "video_llama_3": vp.TorchVideoLlama3VideoProcessor, "molmo2": vp.TorchMolmo2VideoProcessor,
        "smolvlm": vp.TorchSmolVLMVideoProcessor, "minicpmv4_6": vp.TorchMiniCPMV4_6VideoProcessor,
        "minicpmv4_7": vp.TorchMiniCPMV4_6VideoProcessor,
        "qwen2_5_omni": TorchQwen2VLVideoProcessor, "qwen2_5_omni_thinker": TorchQwen2VLVideoProcessor,
        "qwen3_omni_moe": TorchQwen2VLVideoProcessor, "qwen3_omni_moe_thinker": TorchQwen2VLVideoProcessor,
    }


PORTED_MODEL_TYPES = (
    "qwen3_5", "qwen3_5_moe", "glm4v", "glm4v_moe", "glm46v", "gemma4", "llava_next_video", "internvl",
    "video_llama_3", "molmo2", "smolvlm", "minicpmv4_6", "minicpmv4_7", "qwen2_5_omni", "qwen2_5_omni_thinker", "qwen3_omni_moe",
    "qwen3_omni_moe_thinker")


def _read(source: str, name: str, local_files_only: bool) -> dict | None:
    from transformers.utils import cached_file

    path = cached_file(source, name, _raise_exceptions_for_missing_entries=False, local_files_only=local_files_only)
    if path is None:
        return None
    with open(path) as f:
        return json.load(f)


def _sub_processor(kind: str, saved: dict):
    """An image processor / feature extractor from its saved dict (the PIL backend where one exists)."""
    import transformers as tf

    type_key = {"image_processor": "image_processor_type", "feature_extractor": "feature_extractor_type"}[kind]
    name = saved.get(type_key)
    if name is None:
        raise InputError(f"the saved {kind} names no {type_key}; cannot rebuild it")
    from vcast.testing import video_ports

    name = name.removesuffix("Fast")
    cls = getattr(video_ports, name, None) if name.startswith("Torch") else None  # saved from a vcast port
    if cls is None and kind == "image_processor" and not name.endswith("Pil"):
        cls = getattr(tf, f"{name}Pil", None) or getattr(video_ports, f"Torch{name}", None)  # Molmo2: torch only
    if cls is None:
        cls = getattr(tf, name)
    return cls.from_dict({k: v for k, v in saved.items() if k != type_key})


def load_processor_with_ports(source: str, model_type: str, *, local_files_only: bool = False):
    """The saved processor of ``model_type`` (a directory or hub id), with vcast's torch-only video processor."""
    import transformers as tf

    from vcast.testing.table import _with_check

    port = _ports().get(model_type)
    if port is None:
        raise InputError(f"vcast has no torch-only video processor for model_type {model_type!r}; install torchvision")
    config = _read(source, "processor_config.json", local_files_only) or {}
    name = config.get("processor_class")
    if name is None:
        raise InputError(f"{source} has no processor_config.json naming its processor class; install torchvision "
                         "and load it with AutoProcessor")
    parts = {"tokenizer": tf.AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)}
    video = config.get("video_processor") or _read(source, "video_preprocessor_config.json", local_files_only)
    if video is None:
        raise InputError(f"{source} has no saved video processor settings")
    parts["video_processor"] = port.from_dict({k: v for k, v in video.items() if k != "video_processor_type"})
    image = config.get("image_processor") or _read(source, "preprocessor_config.json", local_files_only)
    if image is not None and "image_processor_type" in image:
        parts["image_processor"] = _sub_processor("image_processor", image)
    features = config.get("feature_extractor")
    if features is None and image is not None and "feature_extractor_type" in image:
        features = image
    if features is not None:
        parts["feature_extractor"] = _sub_processor("feature_extractor", features)
    options = {k: v for k, v in config.items() if not isinstance(v, dict) and k != "processor_class"}
    cls = _with_check(getattr(tf, name))
    return cls(**parts, chat_template=parts["tokenizer"].chat_template, **options)
