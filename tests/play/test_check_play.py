"""The playground page in real headless Chromium, end to end (scripts/check_play.py)."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("websocket")


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium not installed (Debian: apt-get install -y chromium; `make setup` does)")
def test_the_page_edits_runs_pins_saves_and_ladder_run_reproduces_it(tmp_path):
    from scripts.check_play import check

    check(tmp_path / "page.png", timeout=120)  # raises Failed, naming the step, on any problem
    assert (tmp_path / "page.png").stat().st_size > 10_000
