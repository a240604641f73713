"""The per-frame guarantee, over the registry: what the README's "every frame" column and each
method's ``keeps_every_frame`` say is what the methods do. A method that claims it never leaves a
frame empty is checked on many videos and ratios; one that does not claim it is shown a video where
a frame does lose every token (so every claim is as strong as it can be)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_reproduce import DTYPES, make_video

import vcast
from vcast.errors import ReproduceError
from vcast.methods import get_method, list_methods, make_config

README = Path(__file__).resolve().parents[2] / "README.md"


def configs() -> list[tuple[str, dict]]:
    """Every method's default config, each of its reproduce= modes, and the options that change
    the guarantee."""
    out = []
    for name in list_methods():
        out.append((name, {}))
        out += [(name, {"reproduce": mode}) for mode in get_method(name).reproduce_modes]
    return out + [("random", {"scope": "frame"}), ("vcast", {"min_tokens_per_frame": 0})]


def readme_column() -> dict[str, str]:
    text = README.read_text()
    section = text[text.index("## Methods"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section else section  # this section only
    rows = re.findall(r"^\| `([\w-]+)` \|(.*)$", section, flags=re.M)
    header = next(line for line in section.splitlines() if line.startswith("| name"))
    col = [c.strip() for c in header.strip("|").split("|")].index("every frame")
    return {name: [c.strip() for c in rest.strip().strip("|").split("|")][col - 1] for name, rest in rows}


def test_readme_column_matches_the_registry() -> None:
    column = readme_column()
    assert set(column) == set(list_methods())
    for name in list_methods():
        spec = get_method(name)
        assert column[name] == ("yes" if spec.keeps_every_frame(spec.config_cls()) else "no"), name
        assert spec.every_frame_note.startswith(("yes", "no", "scope")), name


def _run(name: str, options: dict, x, ratio: float):
    try:
        return vcast.select_tokens(x, method=name, retain_ratio=ratio, **options)
    except ReproduceError:  # the published code cannot run there: nothing is kept or claimed
        return None


CLAIMED = [(n, o) for n, o in configs() if get_method(n).keeps_every_frame(make_config(n, **o))]
NOT_CLAIMED = [(n, o) for n, o in configs() if not get_method(n).keeps_every_frame(make_config(n, **o))]


@pytest.mark.filterwarnings("ignore:reproduce=.authors.")
@pytest.mark.parametrize(("name", "options"), CLAIMED, ids=lambda v: str(v))
@settings(max_examples=40, deadline=None)
@given(t=st.integers(1, 24), n=st.integers(1, 64), kind=st.sampled_from(["random", "ties", "static", "flat"]),
       seed=st.integers(0, 1000), dtype=st.sampled_from(DTYPES),
       ratio=st.sampled_from([1.0, 0.5, 0.25, 0.1, 0.01, 0.001, "auto"]))
def test_claimed_guarantee_holds(name, options, t, n, kind, seed, dtype, ratio) -> None:
    if name == "pool":
        n = 16  # a square grid
    sel = _run(name, options, make_video(t, n, 8, kind, seed, dtype), ratio)
    if sel is not None:
        assert int(sel.frame_budget.min()) >= 1, sel.frame_budget.tolist()


@pytest.mark.parametrize(("name", "options"), NOT_CLAIMED, ids=lambda v: str(v))
def test_unclaimed_guarantee_is_really_broken_somewhere(name, options) -> None:
    for seed in range(200):
        t = 8 + seed % 16
        x = make_video(t, 6 + seed % 10, 8, ["random", "static"][seed % 2], seed, DTYPES[0])
        for ratio in (0.25, 0.15, 0.05, 0.01):
            sel = _run(name, options, x, ratio)
            if sel is not None and int(sel.frame_budget.min()) == 0:
                return
    pytest.fail(f"{name} {options} never left a frame empty: claim keeps_every_frame")
