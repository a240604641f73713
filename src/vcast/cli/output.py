"""What every command shares for output: ``--json PATH``, tables that survive a pipe, progress.

* ``--json PATH`` is the one machine-readable switch of every command: it writes the command's
  result as JSON to PATH, or to stdout with ``--json -`` (tables and notes then go to stderr or
  are left out, so stdout is pure JSON).
* Tables are printed through :func:`console`: on a terminal at its width; into a pipe or a file at
  a fixed wide width, so names are never cut to fit 80 columns.
* :func:`progress` is rich's progress bar on a terminal and, when stderr is not one (CI logs, a
  pipe), one plain line per step at most every few seconds, so long benchmarks never run silent.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

JSON_HELP = "Write the result as JSON to this file ('-': stdout)."
PIPE_WIDTH = 220  # characters per line of a table printed into a pipe or a file


def console(*, stderr: bool = False):
    """A rich Console: the terminal's width on a terminal, :data:`PIPE_WIDTH` otherwise."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else PIPE_WIDTH)


def to_stdout(path: str | Path | None) -> bool:
    """True for ``--json -``: the JSON goes to stdout and nothing else may."""
    return path is not None and str(path) == "-"


def write_json(path: str | Path | None, payload: Any, *, indent: int = 2) -> None:
    """Write ``payload`` for ``--json PATH`` (nothing if None; stdout for ``-``, else the file, with
    a ``wrote PATH`` note on stderr)."""
    if path is None:
        return
    text = json.dumps(payload, indent=indent)
    if to_stdout(path):
        typer.echo(text)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    typer.echo(f"wrote {path}", err=True)


class _LineProgress:
    """The :func:`progress` stand-in off a terminal: plain lines on stderr, rate-limited."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.tasks: dict[int, dict[str, Any]] = {}
        self.start = time.perf_counter()
        self.last = -float("inf")

    def __enter__(self) -> _LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.tasks.values():
            if task["shown"] != (task["description"], task["completed"]):
                self._print(task)

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        task_id = len(self.tasks)
        self.tasks[task_id] = {"description": description, "total": total, "completed": 0, "shown": None}
        self._print(self.tasks[task_id])
        return task_id

    def update(self, task_id: int, *, advance: float | None = None, completed: float | None = None,
               total: float | None = None, description: str | None = None, **_: Any) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task["total"] = total
        if completed is not None:
            task["completed"] = completed
        if advance:
            task["completed"] += advance
        if description is not None:
            task["description"] = description
        if time.perf_counter() - self.last >= self.every:
            self._print(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _print(self, task: dict[str, Any]) -> None:
        self.last = time.perf_counter()
        count = f" ({task['completed']:g}/{task['total']:g})" if task["total"] else ""
        typer.echo(f"[{self.last - self.start:6.1f}s] {task['description']}{count}", err=True)
        task["shown"] = (task["description"], task["completed"])


def progress(*, every: float = 5.0, transient: bool = False):
    """A progress display for a long command (``with progress() as bar: t = bar.add_task(...)``):
    rich's bar with elapsed and remaining time on a terminal; off one, a line on stderr at most
    every ``every`` seconds (and at the end)."""
    if not sys.stderr.isatty():
        return _LineProgress(every)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console(stderr=True), transient=transient)
