"""A stage that makes more than one pass over the test examples (self-refine: answer, then revise).

Written the obvious way — `ladder.evaluate` twice — the second pass must be what the stage reports:
samples.jsonl resumes by the prompt's content, not by the example id, so a second pass with other
prompts is never answered from the first."""

from __future__ import annotations

import json
import re
import sys

import pytest
import yaml

WORDS = {"positive": "great", "negative": "awful"}


def write_data(folder, n: int = 12) -> None:
    folder.mkdir(exist_ok=True)
    with open(folder / "test.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            label = sorted(WORDS)[i % 2]
            f.write(json.dumps({"text": f"the meal {i} was {WORDS[label]}", "label": label}) + "\n")


BROKEN: set[str] = set()
"""Reviews whose revision the server fails to answer (HTTP 500) in this run."""


def drafts_wrong(req, i):
    """A model whose first answer is always 'negative' and whose revision is right."""
    text = " ".join(m["content"] for m in req.messages)
    word = re.search(r"the meal \d+ was (\w+)", text).group(1)
    if "Revise" in req.prompt:
        if any(f"meal {b} " in text for b in BROKEN):
            raise RuntimeError("server error")
        return next(label for label, w in WORDS.items() if w == word)
    return "negative"


TWICE = '''
from typing import Literal

import ladder


class TwiceConfig(ladder.StageConfig):
    type: Literal["twice"] = "twice"


class Twice(ladder.Stage):
    """Two `ladder.evaluate` calls: the draft, then a revision over other prompts."""

    Config = TwiceConfig

    def run(self, ctx):
        first = [ladder.Prompt(ex, ctx.task.render(ex)) for ex in ctx.examples]
        ladder.evaluate(ctx, first)
        second = [ladder.Prompt(p.example, [*p.messages, ladder.Message("user", "Revise your answer.")])
                  for p in first]
        return ladder.evaluate(ctx, second)
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    from ladder import registry

    (tmp_path / "twice_stage.py").write_text(TWICE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry.STAGES, "_targets", dict(registry.STAGES._targets))
    registry.register("stage", "twice", "twice_stage:Twice")
    yield
    sys.modules.pop("twice_stage", None)


def experiment(tmp_path, srv, stages):
    write_data(tmp_path / "data")
    config = {"name": "passes", "results_dir": str(tmp_path / "results"),
              "task": {"data": {"test": "data/test.jsonl"}, "target": "label", "template": "Review: {text}"},
              "metric": "exact_match",
              "model": {"backend": "openai", "name": "gpt-4o-mini", "base_url": srv.openai_base_url,
                        "api_key_env": "LADDER_TEST_OPENAI_KEY", "max_retries": 0},
              "stages": stages}
    path = tmp_path / "passes.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def test_two_evaluate_calls_report_the_second_pass(plugin, tmp_path, monkeypatch):
    from ladder.config import load_experiment
    from ladder.evidence import samples_mismatch
    from ladder.runner import run_experiment
    from ladder.testing.fake_api import FakeAPIServer

    monkeypatch.setenv("LADDER_TEST_OPENAI_KEY", "sk-test")
    with FakeAPIServer(responder=drafts_wrong) as srv:
        path = experiment(tmp_path, srv, [{"type": "zero_shot"}, {"type": "twice"}])
        zero, twice = run_experiment(load_experiment(path))
        assert zero.metric.value == 0.5  # the drafts: 'negative' for every review
        assert twice.metric.value == 1.0 and twice.metric.n == 12  # the revisions, not the drafts
        assert twice.stats.resumed_examples == 0
        # samples.jsonl holds the pass the stage reported, once per example, and matches metrics.json.
        lines = (tmp_path / "results" / "passes" / "twice" / twice.run_id / "samples.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert len(records) == 12 and all(r["prompt"][-1]["content"] == "Revise your answer." for r in records)
        assert samples_mismatch(tmp_path / "results" / "passes", twice) is None
        calls = srv.stats()
        # A second run is answered from its results: nothing new is asked.
        again = run_experiment(load_experiment(path))
        assert again[1].metric.value == 1.0 and srv.stats() == calls


def test_a_retried_second_pass_is_not_answered_from_the_first(plugin, tmp_path, monkeypatch):
    """A re-run retries the examples that failed: the first pass, asked again, must not be taken
    for the second (resume keyed by the example id alone answered the retried revision with the
    draft)."""
    from ladder.config import load_experiment
    from ladder.runner import run_experiment
    from ladder.testing.fake_api import FakeAPIServer

    monkeypatch.setenv("LADDER_TEST_OPENAI_KEY", "sk-test")
    with FakeAPIServer(responder=drafts_wrong) as srv:
        path = experiment(tmp_path, srv, [{"type": "twice"}])
        BROKEN.update({"3", "5"})
        try:
            (first,) = run_experiment(load_experiment(path))
        finally:
            BROKEN.clear()
        assert first.stats.errors == 2 and first.metric.n == 10 and first.metric.value == 1.0
        (retried,) = run_experiment(load_experiment(path))
    assert retried.stats.errors == 0
    assert retried.metric.n == 12 and retried.metric.value == 1.0
