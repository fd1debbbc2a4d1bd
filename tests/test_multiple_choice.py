"""configs/multiple_choice.yaml as a user runs it, and choice_prob on per-example choices end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ladder.config import load_experiment
from ladder.runner import run_experiment
from tests.conftest import REPO


def test_the_shipped_multiple_choice_config_runs_offline(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ladder.cli", "run", "configs/multiple_choice.yaml",
                          "--set", f"results_dir={tmp_path / 'results'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "results" / "multiple_choice"
    assert (folder / "summary.csv").exists()
    records = [json.loads(line) for line in next((folder / "few_shot").iterdir()).joinpath("samples.jsonl")
               .read_text().splitlines()]
    assert len(records) == 30  # half of the 60 questions held out as test
    for r in records:
        # Each prompt shows its own options, lettered, and the gold answer is one of those letters.
        last = r["prompt"][-1]["content"]
        letters = [line[0] for line in last.splitlines() if len(line) > 2 and line[1:3] == ". "]
        assert letters == list("ABCDEFGHIJ"[:len(letters)]) and len(letters) >= 2
        assert r["target"] in letters
        assert r["prompt"][-2]["role"] == "assistant" and len(r["prompt"][-2]["content"]) == 1  # shot: a letter


@pytest.mark.parametrize("normalize", ["none", "tokens", "chars"])
def test_choice_prob_on_per_example_choices(tmp_path, normalize):
    """No task-level `choices`: choice_prob scores each example over its own K (hf's log-probs)."""
    exp = (REPO / "configs" / "multiple_choice.yaml").read_text()
    path = tmp_path / "exp.yaml"
    path.write_text(exp.replace("../data/facts/facts.csv", str(REPO / "data" / "facts" / "facts.csv")))
    sets = [f"results_dir={tmp_path / 'results'}", "task.answer_format=text", "stages=[{type: zero_shot}]",
            f"metric={{type: choice_prob, normalize: {normalize}}}", "subsample.n=8"]
    results = run_experiment(load_experiment(path, sets))
    m = results[0].metric
    assert m.n == 8 and 0 < m.value < 1
    run = next((tmp_path / "results" / "multiple_choice" / "zero_shot").iterdir())
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    for r in records:
        options = [line[3:] for line in r["prompt"][-1]["content"].splitlines() if line[1:3] == ". "]
        assert r["samples"][0]["extracted"] in options  # the top choice is one of this example's own


@pytest.mark.parametrize("generate", [False, True])
def test_choice_prob_generates_only_when_asked(tmp_path, monkeypatch, generate):
    """choice_prob's score reads only the choices' log-probabilities: by default the stage costs
    one log-probability pass per choice set and generates nothing; `generate: true` adds a greedy
    answer per example for the browser — the score is the same either way."""
    from ladder.backends.hf import HFBackend

    calls = {"sample": 0, "logprobs": 0}
    sample, logprobs = HFBackend.sample, HFBackend.continuation_logprobs

    def counted_sample(self, jobs, *args, **kwargs):
        calls["sample"] += len(jobs)
        return sample(self, jobs, *args, **kwargs)

    def counted_logprobs(self, prompts, continuations):
        calls["logprobs"] += 1
        return logprobs(self, prompts, continuations)

    monkeypatch.setattr(HFBackend, "sample", counted_sample)
    monkeypatch.setattr(HFBackend, "continuation_logprobs", counted_logprobs)
    exp = (REPO / "configs" / "multiple_choice.yaml").read_text()
    path = tmp_path / "exp.yaml"
    path.write_text(exp.replace("../data/facts/facts.csv", str(REPO / "data" / "facts" / "facts.csv")))
    sets = [f"results_dir={tmp_path / 'results'}", "task.answer_format=text", "stages=[{type: zero_shot}]",
            f"metric={{type: choice_prob, generate: {str(generate).lower()}}}", "subsample.n=8"]
    (result,) = run_experiment(load_experiment(path, sets))
    assert result.metric.n == 8 and calls["logprobs"] >= 1
    assert calls["sample"] == (8 if generate else 0)
    run = next((tmp_path / "results" / "multiple_choice" / "zero_shot").iterdir())
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    reasons = {r["samples"][0]["finish_reason"] for r in records}
    assert (reasons == {"scored"}) != generate and all(r["samples"][0]["extracted"] for r in records)
    names = {g.name for g in result.guards}
    assert ("stop_hit" in names) == generate  # no stop rate to check when nothing was generated
    assert (result.stats.stop_hit_rate is None) != generate
