"""The ``vcast`` command line. Each sub-module adds its commands to :data:`app`."""

from __future__ import annotations

import sys

import typer

from vcast.cli.app import app

# Command modules register themselves on import.
from vcast.cli import basic  # noqa: E402,F401  isort: skip
from vcast.cli import bench_coverage  # noqa: E402,F401  isort: skip
from vcast.cli import bench_efficiency  # noqa: E402,F401  isort: skip
from vcast.cli import bench_stream  # noqa: E402,F401  isort: skip
from vcast.cli import model  # noqa: E402,F401  isort: skip
from vcast.cli import proxy  # noqa: E402,F401  isort: skip


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr (``vcast: warning: ...``), not Python's file:line report."""
    typer.secho(f"vcast: warning: {message}", err=True, fg="yellow")


def main() -> None:
    """Console-script entry point: vcast errors print as one line, exit code 2; warnings one line each."""
    import warnings

    from vcast.errors import VCastError

    warnings.showwarning = _show_warning
    try:
        app()
    except VCastError as err:
        typer.secho(f"vcast: error: {err}", err=True, fg="red")
        sys.exit(2)


__all__ = ["app", "main"]
