"""Progress on stderr when it is not a terminal (a log file, CI, `2>&1 | tee`): one plain line per
finished bar or stage, no bars, no blank lines, no colour codes, no message wrapped at 80 columns."""

from __future__ import annotations

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
