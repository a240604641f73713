"""``vcast --version`` and ``vcast methods``."""

from __future__ import annotations

import json

import typer

from vcast.cli.app import app


def _version(value: bool) -> None:
    if value:
        from vcast import __version__

        typer.echo(f"vcast {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Training-free visual-token pruning for Video LLMs (V-CAST and peers)."""


@app.command("methods")
def methods(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the registered pruning methods and their default options."""
    from vcast.methods import get_method, list_methods

    rows = []
    for name in list_methods():
        spec = get_method(name)
        rows.append({"name": name, "merges": spec.merges, "summary": spec.summary,
                     "defaults": spec.config_cls().to_dict(), "reproduce": list(spec.reproduce_modes),
                     "every_frame": spec.keeps_every_frame(spec.config_cls()),
                     "every_frame_note": spec.every_frame_note})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("method", "merges", "reproduce=", "summary", "every frame keeps a token?")
    for row in rows:
        table.add_row(row["name"], "yes" if row["merges"] else "no", ", ".join(row["reproduce"]) or "-",
                      row["summary"], row["every_frame_note"])
    Console().print(table)
