"""docs/judges.md runs: its first Python block (a pairwise-judged experiment on ladder-tiny with a
stand-in judge on 127.0.0.1, then verdicts recorded with `ladder.labels.label`) is taken from the
page's own text and run, so the page cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import REPO


def test_the_judges_page_example_runs_and_shows_win_rates_and_agreement(tmp_path):
    text = (REPO / "docs" / "judges.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(# judges_demo\.py\n.*?)```", text, re.S).group(1)
    assert text.index(block) < text.index("## Pairwise judging")  # the page starts with it
    script = tmp_path / "judges_demo.py"
    script.write_text(block)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    # The reference row is 0.5 by definition; few_shot's win rate and its agreement with the labels.
    assert "| zero_shot | judge | 0.500 [0.500, 0.500] | 40 |" in done.stdout
    assert re.search(r"\| few_shot \| judge \| 0\.\d{3} \[", done.stdout)
    assert "few_shot · judge vs people's labels: agreement" in done.stdout and "n=40 labelled" in done.stdout
