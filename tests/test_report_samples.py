"""The sample browser's "stages disagree" is the atlas panel's: one definition (the stages scored
the example differently), one count, one name (ladder/report_samples.stages_disagree)."""

from __future__ import annotations

import json

from ladder.atlas import load_points
from ladder.atlas_page import disagreeing
from ladder.evidence import Evidence
from ladder.report_samples import browser_data, samples_html, stages_disagree
from tests.test_report import browser_folder


def test_one_definition_of_stages_disagree(tmp_path):
    folder = browser_folder(tmp_path, n=90)
    # Example 0: zero_shot and rl give two *different wrong* answers — the same outcome (score 0),
    # which the browser counted as a disagreement and the atlas did not.
    for stage, wrong in (("zero_shot", "neutral"), ("rl", "negative"), ("best_of_n", "neutral")):
        path = next((folder / stage).glob("*/samples.jsonl"))
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        assert recs[0]["target"] == "positive"
        for s in recs[0]["samples"]:
            s.update(text=f" {wrong}", extracted=wrong, score=0.0)
        recs[0]["score"] = 0.0
        if stage == "best_of_n":
            recs[0]["answer"] = wrong
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))

    rows = browser_data(Evidence.load(folder))["rows"]
    browser = {r["id"] for r in rows if r["d"]}
    atlas = disagreeing(load_points(folder))
    assert browser == atlas and 0 < len(browser) < 90
    assert "ex0" not in browser  # different answers, same score: not a disagreement
    # And the definition itself: scores differ (None — unscored — is left out).
    assert stages_disagree([1.0, 0.0]) and not stages_disagree([0.0, 0.0, None]) and not stages_disagree([None])
    assert "the stages scored the example differently" in samples_html(Evidence.load(folder))


def test_browser_html_numbers_samples_from_1_and_marks_the_clicked_cell(tmp_path):
    """What the page carries (checked in a browser below): completions numbered from 1 as in the
    atlas ('sample 1 of 4'), a style for the clicked cell, the pager kept on one line."""
    from ladder.report import write

    page = write(browser_folder(tmp_path, n=12), atlas=False).read_text()
    assert "(i + 1) + '</td><td><pre>'" in page and "td.cell.picked" in page
    assert "<span class=\"pager\">" in page and ".samples .pager {" in page and "white-space: nowrap" in page


chromium = __import__("pytest").mark.skipif(__import__("shutil").which("chromium") is None,
                                           reason="chromium not installed (apt-get install -y chromium)")
PROBE = """(() => {
  const b1 = document.getElementById('sf-prev').getBoundingClientRect();
  const b2 = document.getElementById('sf-next').getBoundingClientRect();
  const first_control = document.querySelector('input[name=sf]').getBoundingClientRect();
  document.querySelector('td.cell[data-col="1"]').click();
  const first = document.querySelector('#sf-detail table.completions tbody tr td');
  const wide = document.querySelector('.wide');
  return JSON.stringify({pager_one_line: Math.round(b1.top) === Math.round(b2.top),
                         controls_one_line: Math.abs(b2.top - first_control.top) < 8,
                         picked: [...document.querySelectorAll('td.cell.picked')].map(td => td.dataset.col),
                         first: first ? first.textContent : null, table_fits: wide.scrollWidth <= wide.clientWidth + 1,
                         page_fits: document.documentElement.scrollWidth <= document.documentElement.clientWidth});
})()"""


@chromium
@__import__("pytest").mark.parametrize("width", [1400, 800])
def test_report_in_a_browser_pager_click_numbering_and_no_clipping(tmp_path, width):
    """In headless Chromium: at 1400 px the controls and pager are one line; a clicked cell is highlighted and its
    completions are numbered from 1; at 800 px the stage table fits its box (nothing clipped)."""
    import pytest

    pytest.importorskip("websocket", reason="pip install websocket-client (the dev extra has it)")
    from ladder.report import write
    from scripts.check_report import check_page

    page = write(browser_folder(tmp_path, n=300), atlas=False)
    seen = check_page(page, width=width, inspect=lambda evaluate: json.loads(evaluate(PROBE)))
    got = seen.inspected
    assert seen.errors == [] and got["pager_one_line"] and got["picked"] == ["1"], got
    assert got["first"] in ("1", "★ 1"), got  # best_of_n's first completion: #1 (★ when it is the selected one)
    assert got["table_fits"] and got["page_fits"], got
    if width == 1400:  # the whole control bar, pager included, on one line
        assert got["controls_one_line"], got
