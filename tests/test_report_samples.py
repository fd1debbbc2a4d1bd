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
