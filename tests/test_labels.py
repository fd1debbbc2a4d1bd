"""`ladder label` and a judged metric's agreement with people: accuracy and Cohen's κ with CIs, the
guards metric_unvalidated / metric_disagrees / labels_ignored, and a judged metric beside a gold one
checked against the gold verdicts with no labelling.

The policy is the scripted backend of tests/scorers (it answers positive / negative / neutral); the
judged metric is a python proxy (`upbeat`: the reply opens on an upbeat word), so no server is needed."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import yaml
from sklearn.metrics import cohen_kappa_score

from ladder.config import load_experiment
from ladder.runner import run_experiment
from ladder.store import read_jsonl
from tests.conftest import REPO

POLICY = {"backend": "tests.scorers.scripted:ScriptedBackend", "name": "policy"}
UPBEAT = {"type": "python", "function": "ladder.metrics.behaviours:upbeat"}


def write(tmp_path, targets=False, n=120, **more):
    rows = [{"prompt": f"Write a short note number {i}.", **({"target": "positive"} if targets else {})}
            for i in range(n)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"name": "l", "results_dir": str(tmp_path / "results"), "cache_dir": str(tmp_path / "cache"),
              "task": {"data": "prompts.jsonl", "template": "{prompt}", "test_size": 0.5,
                       **({} if targets else {"target": None})},
              "model": POLICY, "generation": {"max_tokens": 4}, "stages": [{"type": "zero_shot"}], **more}
    if "metrics" not in more:
        config["metric"] = UPBEAT
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def records(tmp_path, row):
    return read_jsonl(tmp_path / "results" / "l" / row.stage / row.run_id / "samples.jsonl")


def summary(tmp_path):
    with open(tmp_path / "results" / "l" / "summary.csv") as f:
        return {r["stage"]: r for r in csv.DictReader(f)}


def person(text: str, i: int) -> int:
    """A labeller who mostly agrees with `upbeat` (the reply opens on "positive") and sometimes not."""
    return int(text == "positive") if i % 4 else int(text != "negative")


def test_labels_from_a_file_give_agreement_and_kappa_that_match_scikit_learn(tmp_path):
    from ladder.labelling import label

    (row,) = run_experiment(load_experiment(write(tmp_path)))
    folder = tmp_path / "results" / "l"
    # Before any label: the judged row says its metric is unchecked.
    assert summary(tmp_path)["zero_shot"].get("kappa") is None
    recs = records(tmp_path, row)
    lines = [{"id": r["id"], "label": "yes" if person(r["samples"][0]["text"], i) else "no"}
             for i, r in enumerate(recs[:50])]
    lines += [{"id": "test-9999", "label": "yes"}]  # outside the subsample: warned, ignored, counted
    (tmp_path / "verdicts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    said = []
    counts = label(folder, "zero_shot", source=str(tmp_path / "verdicts.jsonl"), say=said.append)
    assert counts == {"recorded": 50, "outside": 1, "stale": 0}
    assert any("labels_ignored" in s and "1 name examples" in s for s in said)
    stored = read_jsonl(folder / "labels.jsonl")
    assert len(stored) == 50 and {"stage", "id", "digest", "label"} <= set(stored[0])

    metric = [int(r["score"] >= 0.5) for r in recs[:50]]
    people = [person(r["samples"][0]["text"], i) for i, r in enumerate(recs[:50])]
    table = summary(tmp_path)["zero_shot"]
    assert int(table["labelled_n"]) == 50
    assert float(table["agreement"]) == pytest.approx(sum(a == b for a, b in zip(metric, people)) / 50)
    assert float(table["kappa"]) == pytest.approx(cohen_kappa_score(metric, people), abs=1e-6)
    assert float(table["kappa_ci_low"]) < float(table["kappa"]) < float(table["kappa_ci_high"])
    assert float(table["agreement_ci_low"]) < float(table["agreement"]) < float(table["agreement_ci_high"])
    assert "metric_disagrees" not in table["flags"]
    import ladder

    assert ladder.load(folder).stages["kappa"].iloc[0] == pytest.approx(cohen_kappa_score(metric, people), abs=1e-6)


def test_a_planted_disagreement_fires_metric_disagrees_with_advice(tmp_path):
    from ladder.labelling import label

    (row,) = run_experiment(load_experiment(write(tmp_path)))
    folder = tmp_path / "results" / "l"
    recs = records(tmp_path, row)
    # The person says the opposite of the metric on every output.
    (tmp_path / "v.csv").write_text("id,label\n" + "".join(f"{r['id']},{'no' if r['score'] >= 0.5 else 'yes'}\n"
                                                          for r in recs[:40]))
    label(folder, "zero_shot", source=str(tmp_path / "v.csv"), say=lambda s: None)
    table = summary(tmp_path)["zero_shot"]
    assert float(table["kappa"]) == pytest.approx(cohen_kappa_score([int(r["score"] >= 0.5) for r in recs[:40]],
                                                                    [int(r["score"] < 0.5) for r in recs[:40]]))
    assert float(table["kappa_ci_high"]) < 0.4 and "metric_disagrees" in table["flags"]
    md = (folder / "summary.md").read_text()
    assert "metric_disagrees" in md and "sharpen the criteria" in md


def test_a_judged_row_without_labels_is_marked_unvalidated(tmp_path):
    from ladder.evidence import Evidence

    from ladder.labels import attach

    run_experiment(load_experiment(write(tmp_path)))
    ev = Evidence.load(tmp_path / "results" / "l")
    attach(ev)
    (g,) = [g for g in ev.results[0].guards if g.name == "metric_unvalidated"]
    assert g.level == "info" and "ladder label" in g.message


def test_a_judged_metric_beside_a_gold_one_reports_its_agreement_with_the_gold_verdicts(tmp_path):
    metrics = {"exact": "exact_match", "upbeat": UPBEAT}
    (row,) = run_experiment(load_experiment(write(tmp_path, targets=True, metrics=metrics)))
    recs = records(tmp_path, row)
    gold = [int(r["score"] >= 0.5) for r in recs]
    judged = [int(r["metrics"]["upbeat"] >= 0.5) for r in recs]
    table = summary(tmp_path)["zero_shot"]
    assert int(table["upbeat_labelled_n"]) == len(recs) == 60
    assert float(table["upbeat_kappa"]) == pytest.approx(cohen_kappa_score(judged, gold), abs=1e-6)
    assert "kappa" not in table  # the gold metric itself is not a proxy


def test_a_relabelled_output_after_the_text_changed_is_ignored_and_counted(tmp_path):
    from ladder.evidence import Evidence

    (row,) = run_experiment(load_experiment(write(tmp_path)))
    folder = tmp_path / "results" / "l"
    rec = records(tmp_path, row)[0]
    (folder / "labels.jsonl").write_text(json.dumps({"stage": "zero_shot", "id": rec["id"], "digest": "0" * 16,
                                                     "label": 1}) + "\n")
    from ladder.labels import attach

    ev = Evidence.load(folder)
    attach(ev)
    (g,) = [g for g in ev.results[0].guards if g.name == "labels_ignored"]
    assert "1 an earlier output" in g.message and ev.results[0].extra.agreement is None


def test_the_cli_reads_verdicts_from_stdin_and_refuses_a_bad_one_writing_nothing(tmp_path):
    (row,) = run_experiment(load_experiment(write(tmp_path)))
    folder = tmp_path / "results" / "l"
    recs = records(tmp_path, row)
    cmd = [sys.executable, "-m", "ladder.cli", "label", str(folder), "--stage", "zero_shot", "--from", "-"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    bad = subprocess.run(cmd, input=f"id,label\n{recs[0]['id']},maybe\n", capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "is not a verdict" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr and not (folder / "labels.jsonl").exists()
    ok = subprocess.run(cmd, input="id,label\n" + "".join(f"{r['id']},yes\n" for r in recs[:5]),
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert len(read_jsonl(folder / "labels.jsonl")) == 5
    assert int(summary(tmp_path)["zero_shot"]["labelled_n"]) == 5
    # Not a terminal and no --from: one clear paragraph, exit 2.
    none = subprocess.run(cmd[:-2], input="", capture_output=True, text=True, env=env)
    assert none.returncode == 2 and "--from" in none.stdout + none.stderr


def test_labelling_interactively_asks_one_output_at_a_time(tmp_path):
    from ladder.labelling import label

    run_experiment(load_experiment(write(tmp_path)))
    folder = tmp_path / "results" / "l"
    answers = iter(["y", "n", "s", "maybe", "y", "q"])
    shown = []
    counts = label(folder, "zero_shot", n=10, ask=lambda prompt: next(answers), say=shown.append)
    assert counts["recorded"] == 3 and len(read_jsonl(folder / "labels.jsonl")) == 3
    assert any("--- output ---" in s for s in shown)
    # Asked again, the labelled outputs are not shown a second time.
    again = iter(["q"])
    first = [s for s in shown if s.startswith("\n[1/")]
    shown.clear()
    label(folder, "zero_shot", n=10, ask=lambda prompt: next(again), say=shown.append)
    assert [s for s in shown if s.startswith("\n[1/")] != first
