"""vcast.cli.output: --json PATH semantics, tables that survive a pipe, progress off a terminal."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vcast.cli import app
from vcast.cli.output import PIPE_WIDTH, console, progress, write_json

runner = CliRunner()


def test_write_json_to_a_file_or_stdout(tmp_path, capsys) -> None:
    write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert json.loads((tmp_path / "a" / "b.json").read_text()) == {"x": 1}
    out = capsys.readouterr()
    assert out.out == "" and "wrote" in out.err
    write_json("-", {"y": [1, 2]})
    assert json.loads(capsys.readouterr().out) == {"y": [1, 2]}
    write_json(None, {"z": 0})
    assert capsys.readouterr().out == ""


def test_tables_are_not_cut_to_80_columns_in_a_pipe() -> None:
    from rich.table import Table

    out = console()
    assert out.width == PIPE_WIDTH  # pytest's stdout is not a terminal
    with out.capture() as cap:
        t = Table("model", "a", "b", "c", "d", "e", "f", "g")
        t.add_row("qwen3-vl-30b-a3b-instruct-with-a-long-name", *["0.123456789"] * 7)
        out.print(t)
    assert "qwen3-vl-30b-a3b-instruct-with-a-long-name" in cap.get()


def test_progress_off_a_terminal_prints_lines(capsys) -> None:
    with progress(every=0.0) as bar:
        task = bar.add_task("building", total=3)
        for name in ("a", "b", "c"):
            bar.update(task, advance=1, description=f"step {name}")
    err = capsys.readouterr().err
    assert "building" in err and "step c (3/3)" in err


def test_every_json_option_takes_a_path_and_dash_means_stdout() -> None:
    import typer.main

    group = typer.main.get_command(app)

    def commands(cmd):
        if hasattr(cmd, "commands"):
            for sub in cmd.commands.values():
                yield from commands(sub)
        else:
            yield cmd

    with_json = [c for c in commands(group) if any("--json" in p.opts for p in c.params)]
    assert {c.name for c in with_json} >= {"methods", "generate", "coverage", "efficiency", "accuracy"}
    for c in with_json:
        (param,) = [p for p in c.params if "--json" in p.opts]
        assert not param.is_flag and param.metavar == "PATH", c.name
    result = runner.invoke(app, ["methods", "--json", "-"])
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["name"] == "vcast"


def test_methods_table_shows_defaults() -> None:
    result = runner.invoke(app, ["methods"])
    assert result.exit_code == 0
    assert "temperature=0.7" in result.stdout and "dominant_fraction=" in result.stdout
    assert "positions='original'" in result.stdout
