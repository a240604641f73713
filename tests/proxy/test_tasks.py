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
    assert len(tasks.FAMILIES) == 8 and [c.family for c in clips] == list(tasks.FAMILIES) * 3
    for c in clips:
        t = tasks.FRAMES[c.family]
        assert t == (64 if c.family == "late" else 16)
        assert c.frames.shape == (t, tasks.FRAME_SIZE, tasks.FRAME_SIZE, 3)
        assert c.labels.shape == (t // 2, 4, 4, 4)
        assert c.frames.dtype == np.uint8
        assert c.answer in tasks.ANSWERS[c.family]
        assert all(0 <= f < t for f in c.evidence)
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


def test_only_the_train_split_draws_procedural_backgrounds(monkeypatch) -> None:
    calls: list[int] = []
    real = tasks._texture
    monkeypatch.setattr(tasks, "_texture", lambda rng, side: calls.append(side) or real(rng, side))
    for split in ("val", "test"):
        tasks.make_split(split, 0, 16)
    assert not calls
    tasks.make_split("train", 0, 40)
    assert 4 <= len(calls) <= 30  # about a third of the shots (cuts clips have several)


def test_textures_are_deterministic_images_of_every_kind() -> None:
    seen = set()
    for i in range(30):
        a, b = tasks._texture(np.random.default_rng(i), 150), tasks._texture(np.random.default_rng(i), 150)
        assert np.array_equal(a, b) and a.shape == (150, 150, 3) and a.dtype == np.float32
        assert a.min() >= 0.0 and a.max() <= 1.0 and a.std() > 0.0
        seen.add(int(np.random.default_rng(i).integers(3)))
    assert seen == {0, 1, 2}


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


def _frame_shift(a: np.ndarray, b: np.ndarray, search: int = 40) -> int:
    """Largest camera displacement (px, max norm) that best aligns grey frames ``b`` onto ``a``
    along each axis (mean absolute difference of the overlap)."""
    a, b = a.astype(np.float32).mean(-1), b.astype(np.float32).mean(-1)
    best = {}
    for axis in (0, 1):
        errs = []
        for s in range(-search, search + 1):
            x, y = (a[max(s, 0):a.shape[0] + min(s, 0)], b[max(-s, 0):b.shape[0] + min(-s, 0)]) if axis == 0 else (
                a[:, max(s, 0):a.shape[1] + min(s, 0)], b[:, max(-s, 0):b.shape[1] + min(-s, 0)])
            errs.append(np.abs(x - y).mean())
        best[axis] = abs(int(np.argmin(errs)) - search)
    return max(best.values())


def test_jolt_clips_jump_the_camera_and_keep_the_shape_out_of_jolted_patches() -> None:
    for i in range(8):
        c = tasks.make_clip("test", 0, i, family="jolt")
        (f,) = c.evidence
        assert c.answer in tasks.SHAPES and c.question == tasks.QUESTIONS["jolt"]
        shifts = [_frame_shift(c.frames[t], c.frames[t + 1]) for t in range(tasks.NUM_FRAMES - 1)]
        assert max(shifts) >= 15, shifts  # a jolt (a slow pan moves <= 1 px per frame)
        # the recorded jolted frames are the ones off the slow path, and none shares the shape's patch
        assert 1 <= len(c.distractors) <= 4 and f // 2 not in {d // 2 for d in c.distractors}
        for d in c.distractors:
            assert max(shifts[d - 1], shifts[d]) >= 15 if d + 1 < tasks.NUM_FRAMES else shifts[d - 1] >= 15
        assert all(s <= 2 for t, s in enumerate(shifts) if t not in c.distractors and t + 1 not in c.distractors)
        # both frames of the shape's temporal patch sit on the slow camera path: aligned with most frames
        for g in (f - f % 2, f - f % 2 + 1):
            on_path = [u for u in range(tasks.NUM_FRAMES) if u != g
                       and _frame_shift(c.frames[g], c.frames[u]) <= abs(g - u) + 2]
            assert len(on_path) >= 8, (g, on_path)  # (a jolted frame lines up with at most 3 others)
        what = c.labels[..., 0]
        assert (what[f // 2] == 1 + tasks.SHAPES.index(c.answer)).any()
        assert not np.delete(what, f // 2, axis=0).any()


def test_only_jolt_clips_record_distractors() -> None:
    assert all(tasks.make_clip("val", 0, i).distractors == () for i in range(8) if tasks.FAMILIES[i] != "jolt")


def test_late_clips_are_long_with_the_shape_in_the_last_quarter() -> None:
    clips = [tasks.make_clip("val", 1, i, family="late") for i in range(6)]
    for c in clips:
        (f,) = c.evidence
        assert len(c.frames) == tasks.LONG_FRAMES == 64 and 48 <= f < 64
        assert c.question == tasks.QUESTIONS["needle"]
        what = c.labels[..., 0]
        assert (what[f // 2] == 1 + tasks.SHAPES.index(c.answer)).any() and not what[:24].any()
    assert len({c.answer for c in clips}) > 1
