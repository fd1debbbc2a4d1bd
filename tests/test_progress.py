"""Progress on stderr when it is not a terminal (a log file, CI, `2>&1 | tee`): one plain line per
finished bar or stage, no bars, no blank lines, no colour codes, no message wrapped at 80 columns."""

from __future__ import annotations

import os
import re

from tests.conftest import experiment
from tests.test_cli import ladder

ANSI = re.compile(r"\x1b\[")


def test_piped_stderr_is_one_plain_line_per_message(tmp_path, random_model):
    path = experiment(tmp_path, random_model, n_test=30, stages=[{"type": "zero_shot"}, {"type": "few_shot", "k": 2}])
    out = ladder("run", path, cwd=tmp_path, env={"COLUMNS": "", "FORCE_COLOR": "", "TERM": "xterm-256color"})
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert lines and not ANSI.search(out.stderr), out.stderr
    assert "" not in lines, out.stderr  # a transient bar leaves a blank line behind
    # every line is a whole message: a stage's line, a finished bar's, or a guard's (level first)
    whole = re.compile(r"^((zero_shot|few_shot)( |: )|(warn|info|ok) \w+: )")
    assert all(whole.match(line) for line in lines), out.stderr
    assert any(line.startswith("zero_shot: generating 30/30 in ") for line in lines), out.stderr
    assert any(line.startswith("few_shot choice = ") for line in lines), out.stderr
    assert any(len(line) > 80 for line in lines), out.stderr  # not wrapped at rich's default width


def test_piped_table_honours_columns(tmp_path):
    """`COLUMNS=100 ladder compare … > t.txt` fits 100 columns, as on a terminal; a pipe with no
    COLUMNS stays wide (not squeezed into rich's default 80)."""
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.test_compare import make, rows

    folder = make(tmp_path / "a", rows(40), {"zero_shot": [1.0, 0.0] * 20, "few_shot": [1.0, 1.0, 0.0, 1.0] * 10,
                                             "few_shot_max": [0.0, 1.0] * 20})

    def compare(columns: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        out = subprocess.run([sys.executable, "-m", "ladder.cli", "compare", str(folder)], capture_output=True,
                             text=True, cwd=REPO, timeout=120, env={**env, "PYTHONPATH": str(REPO),
                                                                    **({"COLUMNS": columns} if columns else {})})
        assert out.returncode == 0, out.stderr
        return out.stdout

    unset = compare("")
    assert max(map(len, unset.splitlines())) > 100  # the pipe's own width: the table is wider than 100
    for columns in (100, 80):
        text = compare(str(columns))
        assert max(map(len, text.splitlines())) <= columns, text
        assert "few_shot_max" in text and "…" not in text


def test_stop_live_erases_a_bar_an_interrupt_left_running(monkeypatch):
    """Ctrl-C inside `trainer.train()` skips the callback that stops the sft bar: main() must stop
    and erase it before saying "interrupted", or the stale bar stays on screen under the message."""
    import io

    import pytest
    from rich.console import Console
    from rich.progress import Progress

    from ladder import cli, progress

    term = Console(file=io.StringIO(), force_terminal=True, force_interactive=True, width=60)
    monkeypatch.setattr(progress, "console", term)
    bar = Progress(console=term, transient=True, auto_refresh=False)

    def app():  # a command whose bar is running when Ctrl-C arrives (never stopped, as in sft_local)
        bar.start()
        bar.add_task("sft: training", total=10, completed=3)
        bar.refresh()
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "app", app)
    with pytest.raises(SystemExit) as stop:
        cli.main()
    assert stop.value.code == 130
    assert not term._live_stack  # no bar is left running (its thread would redraw it)
    out = term.file.getvalue()
    last_bar = out.rindex("sft: training")
    assert "\x1b[2K" in out[last_bar:]  # and the last drawn bar was erased after it was drawn
