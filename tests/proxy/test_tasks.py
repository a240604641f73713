"""The question generator: determinism, disjoint splits, balanced families, valid answers."""

from __future__ import annotations

import numpy as np
import pytest

from vcast.errors import InputError
from vcast.proxy import tasks


def test_same_split_seed_index_gives_the_same_clip() -> None:
    a, b = tasks.make_clip("train", 3, 7), tasks.make_clip("train", 3, 7)
    assert np.array_equal(a.frames, b.frames) and (a.question, a.answer, a.evidence) == (b.question, b.answer,
                                                                                        b.evidence)


def test_splits_and_seeds_give_different_clips() -> None:
    base = tasks.make_clip("test", 0, 0).frames
    assert not np.array_equal(base, tasks.make_clip("test", 1, 0).frames)
    assert not np.array_equal(base, tasks.make_clip("val", 0, 0).frames)
    assert not np.array_equal(base, tasks.make_clip("train", 0, 0).frames)


def test_split_photos_are_disjoint_and_load_offline() -> None:
    names = [set(v) for v in tasks.SPLIT_PHOTOS.values()]
    assert all(not (a & b) for i, a in enumerate(names) for b in names[i + 1:])
    for split in tasks.SPLIT_PHOTOS.values():
        for name in split:
            img = tasks.photo(name)
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 300


def test_split_is_balanced_and_answers_are_valid() -> None:
    clips = tasks.make_split("val", 0, 24)
    assert [c.family for c in clips] == list(tasks.FAMILIES) * 4
    for c in clips:
        assert c.frames.shape == (tasks.NUM_FRAMES, tasks.FRAME_SIZE, tasks.FRAME_SIZE, 3)
        assert c.frames.dtype == np.uint8
        assert c.answer in tasks.ANSWERS[c.family]
        assert all(0 <= f < tasks.NUM_FRAMES for f in c.evidence)
        if c.family == "order":
            assert c.answer in c.question.split()


def test_answers_cover_each_family_answer_set() -> None:
    clips = [tasks.make_clip("train", 0, i, family=f) for f in ("needle", "cuts", "where") for i in range(40)]
    for fam in ("needle", "cuts", "where"):
        assert {c.answer for c in clips if c.family == fam} == set(tasks.ANSWERS[fam])


def test_cut_count_matches_frame_jumps() -> None:
    for i in range(12):
        c = tasks.make_clip("test", 0, i, family="cuts")
        jumps = np.abs(np.diff(c.frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
        assert int(c.answer) == len(c.evidence)
        for f in c.evidence:  # a cut at frame f: f odd (inside a temporal patch), a big jump into it
            assert f % 2 == 1 and jumps[f - 1] > 3 * np.median(jumps)


def test_needle_is_visible_in_exactly_its_frame() -> None:
    c = tasks.make_clip("val", 0, 0, family="needle")
    (f,) = c.evidence
    diff = np.abs(np.diff(c.frames.astype(np.int16), axis=0)).sum(axis=(1, 2, 3))
    assert diff.argmax() in (f - 1, f)


@pytest.mark.parametrize("kwargs", [dict(split="nope", seed=0, index=0), dict(split="test", seed=-1, index=0),
                                    dict(split="test", seed=0, index=0, family="nope")])
def test_bad_arguments_raise_input_error(kwargs) -> None:
    with pytest.raises(InputError):
        tasks.make_clip(**kwargs)
    with pytest.raises(InputError):
        tasks.make_split("test", 0, 0)


def test_first_label_marks_the_earlier_object_of_an_order_clip() -> None:
    for i in range(6):
        c = tasks.make_clip("test", 0, i, family="order")
        what, first = c.labels[..., 0], c.labels[..., 3]
        assert c.labels.shape == (tasks.NUM_FRAMES // 2, 4, 4, 4)
        answer_class = 1 + tasks.SHAPES.index(c.answer)
        assert set(np.unique(first[what == answer_class])) == {1}
        other = (what > 0) & (what != answer_class)
        assert other.any() and set(np.unique(first[other])) == {2}
        assert not first[what == 0].any()


def test_single_object_families_mark_their_object_first() -> None:
    for fam in ("needle", "motion", "where"):
        c = tasks.make_clip("val", 0, 1, family=fam)
        what, first = c.labels[..., 0], c.labels[..., 3]
        assert (first[what > 0] == 1).all() and (what > 0).any()


def test_only_the_train_split_is_recoloured(monkeypatch) -> None:
    calls: list[int] = []
    real = tasks._recolour
    monkeypatch.setattr(tasks, "_recolour", lambda rng, pic: calls.append(1) or real(rng, pic))
    for split in ("val", "test"):
        tasks.make_split(split, 0, 12)
    assert not calls
    tasks.make_split("train", 0, 12)
    assert calls


def test_recolour_keeps_shape_range_and_dtype() -> None:
    rng = np.random.default_rng(0)
    pic = rng.uniform(size=(40, 40, 3)).astype(np.float32)
    for _ in range(20):
        out = tasks._recolour(rng, pic)
        assert out.shape == pic.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0 and out.flags.c_contiguous


def test_make_split_cycles_the_given_families() -> None:
    fams = ("where", "motion", "where")
    clips = tasks.make_split("train", 0, 6, families=fams)
    assert [c.family for c in clips] == list(fams) * 2
    assert tasks.make_split("val", 0, 6)[2].frames.tobytes() == tasks.make_clip("val", 0, 2).frames.tobytes()
    with pytest.raises(InputError):
        tasks.make_split("train", 0, 6, families=("nope",))
    with pytest.raises(InputError):
        tasks.make_split("train", 0, 6, families=())


def test_train_photos_are_the_same_in_every_process() -> None:
    import hashlib
    import subprocess
    import sys

    code = ("import hashlib; from vcast.proxy import tasks; print(hashlib.sha256(b''.join("
            "tasks.photo(n).tobytes() for n in tasks.SPLIT_PHOTOS['train'])).hexdigest())")
    here = hashlib.sha256(b"".join(tasks.photo(n).tobytes() for n in tasks.SPLIT_PHOTOS["train"])).hexdigest()
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == here  # (binary_blobs is generated, so its seed must be fixed)
