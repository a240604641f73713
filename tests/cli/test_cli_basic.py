"""`vcast --version`, `vcast methods` and the one-line error path."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

import vcast
from vcast.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"vcast {vcast.__version__}"


def test_methods_json_lists_registry() -> None:
    result = runner.invoke(app, ["methods", "--json", "-"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == vcast.list_methods()
    assert rows[0]["defaults"]["retain_ratio"] == 0.25


def test_console_script_reports_vcast_errors_in_one_line() -> None:
    code = "import sys; sys.argv=['vcast','methods']; import vcast.cli as c; " \
           "import vcast.methods as m; m.list_methods = lambda: (_ for _ in ()).throw(vcast.ConfigError('boom')); c.main()"
    proc = subprocess.run([sys.executable, "-c", "import vcast; " + code], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "vcast: error: boom"
