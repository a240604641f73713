"""The offline tiny models: every family builds, its processor runs, and generate() works."""

from __future__ import annotations

import pytest
import torch

import vcast.testing as vt
from vcast.errors import UnsupportedModelError

QWEN = ["qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl"]


@pytest.mark.parametrize("model_type", QWEN)
def test_tiny_qwen_end_to_end(model_type):
    model, processor = vt.tiny_model(model_type)
    assert model.config.model_type == model_type
    inputs = vt.make_inputs(processor, "Describe the clip.", videos=[vt.random_video(5, 64, 64)],
                            images=[vt.random_image(32, 48)])
    # 5 frames -> 3 temporal patches (temporal patch 2); 64x64 -> 8x8 patches -> 16 tokens per frame.
    assert inputs["video_grid_thw"].tolist() == [[3, 8, 8]]
    assert int((inputs["input_ids"] == model.config.video_token_id).sum()) == 3 * 16
    assert int((inputs["mm_token_type_ids"] == 2).sum()) == 3 * 16
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 3)


def test_tokenizer_round_trip_and_special_ids():
    _, processor = vt.tiny_model("qwen2_vl")
    tok = processor.tokenizer
    text = "héllo <|video_pad|> wörld"
    assert tok.decode(tok(text)["input_ids"]) == text
    from vcast.testing.qwen import TOKEN_ID

    for name, idx in TOKEN_ID.items():
        assert tok.convert_tokens_to_ids(name) == idx


def test_same_seed_same_weights():
    a, _ = vt.tiny_model("qwen2_vl", seed=3)
    b, _ = vt.tiny_model("qwen2_vl", seed=3)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_batch_is_left_padded():
    _, processor = vt.tiny_model("qwen3_vl")
    inputs = vt.make_inputs(processor, ["a", "a much longer prompt"], videos=[vt.random_video(2), vt.random_video(4)])
    assert inputs["attention_mask"][0, 0] == 0 and inputs["attention_mask"][:, -1].all()


def test_unknown_model_type():
    with pytest.raises(UnsupportedModelError, match="qwen3_vl"):
        vt.tiny_model("gpt2")


def test_torch_video_processors_round_trip_and_qwen2_rules(tmp_path):
    from transformers.video_utils import VideoMetadata

    from vcast.testing.qwen import TorchQwen2VLVideoProcessor

    _, processor = vt.tiny_model("qwen2_5_vl")
    video = vt.random_video(6, 40, 72)
    processor.video_processor.save_pretrained(tmp_path)
    loaded = TorchQwen2VLVideoProcessor.from_pretrained(tmp_path)
    a = processor.video_processor(videos=[video], return_tensors="pt")
    b = loaded(videos=[video], return_tensors="pt")
    assert torch.equal(a["pixel_values_videos"], b["pixel_values_videos"])
    assert a["video_grid_thw"].tolist() == [[3, 4, 8]]  # 40x72 -> smart_resize to 32x64 (multiples of 16)
    legacy = TorchQwen2VLVideoProcessor(min_pixels=100, max_pixels=5000)
    assert (legacy.size["shortest_edge"], legacy.size["longest_edge"]) == (100, 5000)
    assert legacy.patch_size == 14 and legacy.do_sample_frames is False
    meta = VideoMetadata(total_num_frames=30, fps=10.0)
    assert len(legacy.sample_frames(meta, fps=2)) == 6  # 3 s at 2 fps, a multiple of the temporal patch
    assert len(legacy.sample_frames(meta, num_frames=7)) == 8


TABLE = sorted(vt.SPECS)


def tiny_or_skip(model_type):
    """The tiny model, or a skip where this transformers' processor needs torchvision (Gemma 4 before 5.24)."""
    try:
        return vt.tiny_model(model_type)
    except UnsupportedModelError as err:
        if "torchvision" not in str(err):
            raise
        pytest.skip(str(err))


@pytest.mark.parametrize("model_type", TABLE)
def test_table_rows_build_process_and_generate(model_type):
    model, processor = tiny_or_skip(model_type)
    assert model.config.model_type == model_type
    videos = [vt.random_video(4, seed=0), vt.random_video(4, seed=1)][: vt.SPECS[model_type].max_videos]
    inputs = vt.make_inputs(processor, "Describe the clips.", videos=videos)
    ids = inputs["input_ids"][0]
    # every video placeholder the processor wrote has a feature: the model runs without a count mismatch
    lm = getattr(model, "thinker", model)  # the whole Qwen-Omni model answers through its thinker
    out = lm.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert out.shape == (1, ids.numel() + 2)
    text = processor.tokenizer.decode(ids)
    assert "Describe the clips." in text


@pytest.mark.parametrize("model_type", TABLE)
def test_table_tokenizers_round_trip_their_special_tokens(model_type):
    _, processor = tiny_or_skip(model_type)
    spec = vt.SPECS[model_type]
    tok = processor.tokenizer
    for token in spec.vocab.tokens:
        assert tok.convert_tokens_to_ids(token) == spec.vocab.id(token)
    assert tok.decode(tok("héllo wörld")["input_ids"]) == "héllo wörld"


ALL_TYPES = sorted(set(vt.TINY_MODEL_TYPES))
OMNI_SIZES_PER_CALL = {"qwen2_5_omni", "qwen2_5_omni_thinker", "qwen3_omni_moe", "qwen3_omni_moe_thinker"}


@pytest.mark.parametrize("model_type", ALL_TYPES)
def test_saved_processor_names_only_stock_transformers_classes(model_type, tmp_path):
    import json

    _, processor = tiny_or_skip(model_type)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert "Torch" not in json.dumps(saved), saved  # no vcast port is written into the user's files


@pytest.mark.parametrize("model_type", ALL_TYPES)
def test_saved_tiny_processor_loads_with_stock_auto_processor(model_type, tmp_path):
    """Where torchvision is installed, stock AutoProcessor rebuilds the processor from the saved folder and
    gives the inputs vcast's torch-only ports gave."""
    pytest.importorskip("torchvision", reason="transformers' own video processors need torchvision")
    from transformers import AutoProcessor

    _, processor = tiny_or_skip(model_type)
    processor.save_pretrained(tmp_path)
    stock = AutoProcessor.from_pretrained(tmp_path, local_files_only=True)
    port = type(processor.video_processor)
    assert type(stock.video_processor).__name__ == (port.stock_name or port.__name__.removeprefix("Torch"))
    if model_type in OMNI_SIZES_PER_CALL:
        return  # the Omni processors pass their 28-px size into every call (vcast's tiny port ignores it)
    videos = [vt.random_video(4, 64, 64)]
    ours, theirs = vt.make_inputs(processor, "What happens?", videos=videos), vt.make_inputs(stock, "What happens?", videos=videos)
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(theirs[key], ours[key], atol=1e-5, rtol=0, msg=key)


@pytest.mark.parametrize("model_type", ["qwen3_vl", "qwen2_5_vl", "qwen2_vl", "llava_onevision", "qwen3_5"])
def test_saved_tiny_model_reloads_with_stock_auto_classes(model_type, tmp_path):
    pytest.importorskip("torchvision", reason="transformers' own video processors need torchvision")
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, processor = vt.tiny_model(model_type)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path, local_files_only=True).eval()
    inputs = vt.make_inputs(AutoProcessor.from_pretrained(tmp_path, local_files_only=True), "What happens?",
                            videos=[vt.random_video(4, 64, 64)])
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, atol=1e-5, rtol=0)
