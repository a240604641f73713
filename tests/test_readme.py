"""The README's code runs as written.

* Every ```` ```python ```` block is executed on its own (a fresh namespace, an empty working
  directory), so each one can be copied alone. A block preceded by the line
  ``<!-- readme-test: skip (why) -->`` (a real checkpoint, a GPU, the network) is not executed; the
  reason must be given, and such a block must still compile.
* Every ``vcast ...`` command the README shows, in ```` ```bash ```` blocks and in inline code (the
  command table), names a real subcommand, and each ``--flag`` it uses exists on that subcommand
  (read from the click command tree that ``--help`` prints, and ``--help`` itself runs). Running
  them is left to the CLI tests: the bash blocks install packages or need real checkpoints.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP = re.compile(r"^<!-- readme-test: skip \((?P<why>[^)]+)\) -->$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")


def readme_blocks(text: str) -> list[dict]:
    """Fenced blocks in order: ``{"lang", "code", "line", "skip"}`` (``skip``: the reason, or None)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group("lang"):
            i += 1
            continue
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.match(before.strip())
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        blocks.append({"lang": m.group("lang"), "code": "\n".join(lines[i + 1:end]), "line": i + 1,
                       "skip": skip.group("why") if skip else None})
        i = end + 1
    return blocks


BLOCKS = readme_blocks(README.read_text())
PYTHON = [b for b in BLOCKS if b["lang"] == "python"]


def test_the_readme_has_runnable_python_and_marked_skips() -> None:
    assert sum(b["skip"] is None for b in PYTHON) >= 2
    for b in PYTHON:
        compile(b["code"], f"README.md:{b['line']}", "exec")  # skipped blocks must still be valid Python
    # A marker that is not exactly the convention would silently run (or skip) the wrong block.
    for n, line in enumerate(README.read_text().splitlines(), 1):
        if "readme-test" in line:
            assert SKIP.match(line.strip()), f"README.md:{n}: malformed marker {line!r}"


@pytest.mark.parametrize("block", [b for b in PYTHON if b["skip"] is None], ids=lambda b: f"line{b['line']}")
def test_python_block_runs_as_written(block, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(block["code"], f"README.md:{block['line']}", "exec"), {"__name__": "__readme__"})


def readme_commands(text: str) -> list[str]:
    """Every ``vcast ...`` command line: bash-block lines (after ``&&``) and inline code spans."""
    commands = []
    for b in readme_blocks(text):
        if b["lang"] in ("bash", "sh", "shell", "console"):
            for line in b["code"].splitlines():
                for part in line.split("&&"):
                    part = part.strip().removeprefix("$ ")
                    if part.startswith("vcast ") or part == "vcast":
                        commands.append(part)
    commands += [m.group(1) for m in re.finditer(r"`(vcast [^`]+)`", text)]
    return commands


def _resolve(words: list[str]):
    """The click command a word list names, and the words after it."""
    import typer.main

    from vcast.cli import app

    cmd = typer.main.get_command(app)
    rest = list(words)
    while rest and hasattr(cmd, "commands") and rest[0] in cmd.commands:
        cmd = cmd.commands[rest.pop(0)]
    return cmd, rest


COMMANDS = readme_commands(README.read_text())


def test_the_readme_shows_commands_for_every_subcommand_group() -> None:
    named = {" ".join(shlex.split(c.replace("[", " ").replace("]", " "))[1:3]) for c in COMMANDS}
    for expected in ("demo", "generate", "viz", "methods", "bench coverage", "bench efficiency", "bench accuracy"):
        assert any(n == expected or n.startswith(expected + " ") or n.split()[0] == expected for n in named), expected


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_names_real_subcommands_and_flags(command: str) -> None:
    from typer.testing import CliRunner

    from vcast.cli import app

    words = [w for w in shlex.split(command.replace("[", " ").replace("]", " "))[1:] if w != "..."]
    cmd, rest = _resolve(words)
    # a group is fine only on its own ("vcast bench ..."); anything after it must be a subcommand
    assert not (hasattr(cmd, "commands") and rest), f"{command!r}: {rest[0]!r} is not a subcommand of {cmd.name!r}"
    options = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    for word in rest:
        if word.startswith("--"):
            flag = word.split("=")[0]
            assert flag in options, f"{command!r}: {flag} is not an option of {cmd.name!r} ({sorted(options)})"
    path = words[: len(words) - len(rest)]
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output, result.output
