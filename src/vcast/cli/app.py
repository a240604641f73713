"""The root Typer app and its ``bench`` sub-group; command modules import these to register."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="vcast",
    help="Training-free visual-token pruning for Video LLMs (V-CAST and peers).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks: coverage, efficiency, accuracy.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
