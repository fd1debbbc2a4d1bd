"""Pairwise judging: a judge compares each row's output with a reference stage's output on the same
example, in both orders; the row's value is the win rate (ties half).

The judge is an OpenAI-compatible fake server on 127.0.0.1 talked to by the real SDK. The policy is
a two-voice backend (below): stage `base` answers "base says <n>", stage `tuned` "tuned says <n>",
so the judge can tell which stage wrote which response whatever the order it is shown in."""

from __future__ import annotations

import csv
import json
import shutil
import zlib
from typing import Callable

import pytest
import yaml

from ladder.backends.base import Backend, BackendConfig, Job
from ladder.config import GenerationConfig, load_experiment
from ladder.runner import run_experiment
from ladder.store import read_jsonl
from ladder.types import Sample
from tests.backends.api_support import FAST, KEY, KEY_ENV


class TwoVoicesConfig(BackendConfig):
    backend: str = "tests.metrics.test_pairwise:TwoVoices"
    name: str = "base"


class TwoVoices(Backend):
    """Answers "<name> says <the example's number>": free and deterministic."""

    Config = TwoVoicesConfig

    def sample(self, jobs: list[Job], gen: GenerationConfig,
               on_done: Callable[[int, list[Sample]], None]) -> None:
        for j, job in enumerate(jobs):
            number = job.messages[-1].content.split()[-1].rstrip(".")
            on_done(j, [Sample(f"{self.config.name} says {number}", "eos", prompt_tokens=3, completion_tokens=3)
                        for _ in job.indices])


def planned(number: str) -> float:
    """The win rate the judge below gives `tuned` on an example: it wins on most, loses on some,
    and the judge calls a few a tie."""
    h = zlib.crc32(number.encode()) % 5
    return 0.5 if h == 0 else 0.0 if h == 1 else 1.0


def by_text(req, index):
    """Prefers `tuned`'s text where planned() says so, whichever position it is in."""
    first, second = req.prompt.split("\n---\n")
    number = first.split()[-1]
    if planned(number) == 0.5:
        return "Tie"
    tuned_wins = planned(number) == 1.0
    return "A" if first.startswith("tuned") == tuned_wins else "B"


def judge(srv):
    return {"type": "judge", "criteria": "Which is better?", "template": "{first}\n---\n{second}",
            "pairwise": {"against": "base"},
            "model": {"backend": "openai", "name": "judge", "base_url": srv.base_url, "api_key_env": KEY_ENV,
                      "max_retries": 0, "concurrency": 64, "price": {"input": 1000.0, "output": 1000.0}, **FAST}}


def write(tmp_path, metric, n=40):
    rows = [{"prompt": f"Write note number {i}."} for i in range(n)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"name": "p", "results_dir": str(tmp_path / "results"), "cache_dir": str(tmp_path / "cache"),
              "task": {"data": "prompts.jsonl", "template": "{prompt}", "test_size": 0.5},
              "model": {"backend": "tests.metrics.test_pairwise:TwoVoices", "name": "base"},
              "metric": metric,
              "stages": [{"type": "zero_shot", "name": "base"},
                         {"type": "zero_shot", "name": "tuned", "model": {"name": "tuned"}}]}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def samples(tmp_path, row):
    return read_jsonl(tmp_path / "results" / "p" / row.stage / row.run_id / "samples.jsonl")


def test_a_judge_that_prefers_one_stage_gives_its_planned_win_rate_exactly(tmp_path, key):
    from ladder.testing.fake_api import FakeAPIServer

    with FakeAPIServer(responder=by_text) as srv:
        rows = {r.stage: r for r in run_experiment(load_experiment(write(tmp_path, judge(srv))))}
        asked = len(srv.requests())
        # Scored again from scratch, the judge is asked nothing (its calls are cached), and the
        # same config keeps its folders.
        shutil.rmtree(tmp_path / "results" / "p" / "tuned")
        again = {r.stage: r for r in run_experiment(load_experiment(write(tmp_path, judge(srv))))}
        assert len(srv.requests()) == asked
    tuned = rows["tuned"]
    numbers = [r["samples"][0]["text"].split()[-1] for r in samples(tmp_path, tuned)]
    want = [planned(x) for x in numbers]
    assert 0 < sum(want) / len(want) < 1 and 0.5 in want  # wins, losses and ties all planned
    assert tuned.metric.value == sum(want) / len(want) and tuned.metric.n == len(want) == 20
    assert tuned.metric.ci_low < tuned.metric.value < tuned.metric.ci_high
    # Both orders asked for every example, and they agree: no inconsistency.
    assert asked == 2 * 20 and tuned.stats.pairwise_compared == 20
    assert tuned.stats.judge_inconsistent == 0
    assert not any(g.name == "judge_inconsistent" for g in tuned.guards)
    assert tuned.stats.metric_cost_usd > 0 and tuned.stats.cost_usd == tuned.stats.metric_cost_usd
    # The reference's own row: 0.5 by definition, no judge call, and it says what it is.
    base = rows["base"]
    assert base.metric.value == 0.5 and base.metric.n == 20 and base.stats.metric_cost_usd is not None
    assert base.stats.metric_cost_usd == 0 and base.stats.pairwise_reference == 20
    assert any(g.name == "pairwise_reference" and g.level == "info" for g in base.guards)
    with open(tmp_path / "results" / "p" / "summary.csv") as f:
        table = {r["stage"]: r for r in csv.DictReader(f)}
    assert float(table["tuned"]["value"]) == pytest.approx(tuned.metric.value)
    assert again["tuned"].run_id == tuned.run_id


def test_a_judge_that_always_picks_the_first_position_gives_one_half_and_is_flagged(tmp_path, key):
    from ladder.testing.fake_api import FakeAPIServer

    with FakeAPIServer(responder=lambda req, i: "A") as srv:
        rows = {r.stage: r for r in run_experiment(load_experiment(write(tmp_path, judge(srv))))}
    tuned = rows["tuned"]
    assert tuned.metric.value == 0.5 and tuned.metric.n == 20
    assert tuned.stats.judge_inconsistent == 1.0 and tuned.stats.judge_inconsistent_count == 20
    (flag,) = [g for g in tuned.guards if g.name == "judge_inconsistent"]
    assert flag.level == "warn" and "20 of 20" in flag.message
    with open(tmp_path / "results" / "p" / "summary.csv") as f:
        assert "judge_inconsistent" in {r["stage"]: r for r in csv.DictReader(f)}["tuned"]["flags"]


def test_the_preference_parser_reads_the_usual_answers():
    from ladder.metrics.pairwise import parse_preference

    assert [parse_preference(t) for t in ("A", "**B**", "[[A]]", "[[C]]", "Tie.", "Response B is better",
                                          "b", "I prefer neither", "A response that...")] == \
        ["A", "B", "A", "tie", "tie", "B", "B", None, "A"]


def test_a_different_reference_output_gives_the_row_a_new_run_id(tmp_path, key):
    from ladder.runner import prepare
    from ladder.testing.fake_api import FakeAPIServer

    with FakeAPIServer(responder=by_text) as srv:
        exp = load_experiment(write(tmp_path, judge(srv)))
        plan = prepare(exp)
        before = plan.resolve(exp.stages[1]).run_id
        raw = yaml.safe_load((tmp_path / "exp.yaml").read_text())
        raw["stages"][0]["generation"] = {"max_tokens": 7}  # the reference changes; `tuned` does not
        (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
        exp2 = load_experiment(tmp_path / "exp.yaml")
        assert prepare(exp2).resolve(exp2.stages[1]).run_id != before
