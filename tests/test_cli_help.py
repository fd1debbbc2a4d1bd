"""`ladder --help` and `--version` as a person reads them: every option says what it does, and the
usage lines and metavars read like a command line, not like Python types."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.core import TyperArgument

import ladder
from ladder.cli import app
from tests.test_cli import ENV


def commands():
    group = typer.main.get_command(app)
    return group, sorted(group.commands.items())


def test_every_option_of_every_command_has_help_text():
    group, cmds = commands()
    assert len(cmds) >= 6
    missing = [f"ladder {name} {p.opts[0] if p.opts else p.name}" for name, cmd in cmds for p in cmd.params
               if not isinstance(p, TyperArgument) and not (p.help or "").strip()]
    missing += [f"ladder {p.opts[0]}" for p in group.params if not (p.help or "").strip()]
    assert not missing, missing


@pytest.mark.parametrize("name", [name for name, _ in commands()[1]])
def test_help_reads_like_a_command_line(name):
    out = subprocess.run([sys.executable, "-m", "ladder.cli", name, "--help"], capture_output=True, text=True,
                         env={**ENV, "COLUMNS": "120"}, timeout=60)
    assert out.returncode == 0, out.stderr
    for odd in ("<bool>", "list[", "{config}", "{results}", "{CONFIG}", "{RESULTS}", "<str>"):
        assert odd not in out.stdout, (name, odd, out.stdout)
    usage = next(line for line in out.stdout.splitlines() if "Usage:" in line)
    assert f"{name} [OPTIONS]" in usage


def test_version_prints_ladder_python_and_the_packages_a_result_depends_on():
    import platform
    from importlib.metadata import version

    out = subprocess.run([sys.executable, "-m", "ladder.cli", "--version"], capture_output=True, text=True,
                         env=ENV, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert lines["ladder"] == ladder.__version__ and lines["python"] == platform.python_version()
    for pkg in ("torch", "transformers", "trl", "openai", "anthropic"):
        assert lines[pkg] == version(pkg)
    assert "torch" not in subprocess.run(  # read from package metadata: nothing heavy is imported
        [sys.executable, "-X", "importtime", "-m", "ladder.cli", "--version"], capture_output=True, text=True,
        env=ENV, timeout=60).stderr
