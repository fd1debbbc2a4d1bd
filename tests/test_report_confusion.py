"""The report's confusion matrices (ladder/report_confusion.py): for a K-way task, one per stage —
gold × the stage's answer, unparsed answers in their own column — recounted here from samples.jsonl."""

from __future__ import annotations

import json
import re
from collections import Counter

from ladder.report import write
from tests.test_report import browser_folder


def _cells(page: str, stage: str) -> dict[tuple[str, str], int]:
    block = page.split(f"<div class='confusion' data-stage='{stage}'>")[1].split("</table></div>")[0]
    return {(g, a): int(k) for g, a, k in re.findall(r"data-gold='([^']*)' data-answer='([^']*)'>(\d+)<", block)}


def test_report_shows_a_confusion_matrix_per_k_way_stage(tmp_path):
    folder = browser_folder(tmp_path, n=60)
    # Two zero_shot answers that named none of the choices (extracted: null), one failed example.
    path = next((folder / "zero_shot").glob("*/samples.jsonl"))
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    for rec in recs[:2]:
        rec["samples"][0].update(extracted=None, score=0.0, text="I cannot tell")
        rec["score"] = 0.0
    recs[2].update(score=None, error=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))

    page = write(folder, atlas=False).read_text()
    assert "<h2>Confusion matrices</h2>" in page
    for stage, answer in (("zero_shot", lambda r: r["samples"][0]["extracted"]), ("best_of_n (oracle)", lambda r: r["answer"]),
                          ("rl", lambda r: r["samples"][0]["extracted"])):
        name = stage.split()[0]
        recs = [json.loads(line) for line in next((folder / name).glob("*/samples.jsonl")).read_text().splitlines()]
        want = Counter((r["target"], answer(r) or "unparsed") for r in recs if not r["error"])
        got = _cells(page, stage)
        assert {k: v for k, v in got.items() if v} == dict(want), stage
        golds = {g for g, _ in got}
        assert golds == {"positive", "negative", "neutral"} and {a for _, a in got} == golds | {"unparsed"}
    zero = _cells(page, "zero_shot")
    assert sum(v for (g, a), v in zero.items() if a == "unparsed") == 2 and sum(zero.values()) == 59


def test_no_matrix_for_a_metric_that_is_not_k_way(tmp_path):
    from ladder.report_confusion import confusion_html
    from tests.test_advice import results_folder, scores
    from ladder.evidence import Evidence

    folder = results_folder(tmp_path, {"zero_shot": ("zero_shot", scores(0.5))})
    assert confusion_html(Evidence.load(folder)) == ""
    assert "Confusion matrices" not in write(folder, atlas=False).read_text()
