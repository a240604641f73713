"""``vcast --version`` and ``vcast methods``."""

from __future__ import annotations

import typer

from vcast.cli.app import app
from vcast.cli.output import JSON_HELP


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


def shared_options() -> list[str]:
    """The MethodConfig fields every method has, besides retain_ratio (shown once, under the table)."""
    import dataclasses

    from vcast.config import MethodConfig

    return [f.name for f in dataclasses.fields(MethodConfig) if f.name != "retain_ratio"]


@app.command("methods")
def methods(json_path: str | None = typer.Option(None, "--json", metavar="PATH", help=JSON_HELP)) -> None:
    """List the registered pruning methods and their default options.

    Every method also takes positions (default original), prune_at (llm) and seed (0).
    """
    from vcast.cli.output import console, write_json
    from vcast.methods import get_method, list_methods

    rows = []
    for name in list_methods():
        spec = get_method(name)
        rows.append({"name": name, "merges": spec.merges, "summary": spec.summary,
                     "defaults": spec.config_cls().to_dict(), "reproduce": list(spec.reproduce_modes),
                     "every_frame": spec.keeps_every_frame(spec.config_cls()),
                     "every_frame_note": spec.every_frame_note})
    write_json(json_path, rows)
    if json_path is not None:
        return
    from rich.table import Table

    shared = shared_options()
    table = Table("method", "merges", "reproduce=", "summary", "defaults", "every frame keeps a token?",
                  caption="Every method also takes " + ", ".join(f"{k}={rows[0]['defaults'][k]!r}" for k in shared)
                  + ". Set options with vcast.make_config(name, ...) or vcast.apply(model, method=name, ...).",
                  caption_justify="left")
    for row in rows:
        defaults = {k: v for k, v in row["defaults"].items() if k not in ("method", *shared)}
        table.add_row(row["name"], "yes" if row["merges"] else "no", ", ".join(row["reproduce"]) or "-",
                      row["summary"], ", ".join(f"{k}={v!r}" for k, v in defaults.items()), row["every_frame_note"])
    console().print(table)
