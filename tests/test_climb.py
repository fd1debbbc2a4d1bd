"""`ladder climb`: stops at the right rung and says why, on a backend whose scores we control.

The `Oracle` backend answers correctly only when the prompt carries shots (earlier assistant
turns) and says "neutral" otherwise, so zero_shot scores about a third and few_shot 1.0."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zlib

import pytest

from ladder.backends.base import Backend, BackendConfig
from ladder.climb import climb, decide
from ladder.config import EscalateConfig, StageConfig, load_experiment
from ladder.errors import ConfigError, LadderError
from ladder.runner import estimate_run, prepare, run_experiment
from ladder.types import MetricValue, Sample, StageResult
from tests.conftest import LABELS, REPO, WORDS, experiment

ORACLE = {"backend": "tests.test_climb:Oracle", "name": "oracle"}
LADDER = [{"type": "zero_shot"}, {"type": "few_shot", "k": 2}, {"type": "few_shot", "name": "few_shot_max", "k": 6}]


class OracleConfig(BackendConfig):
    backend: str = "tests.test_climb:Oracle"
    name: str = "oracle"


class Oracle(Backend):
    Config = OracleConfig

    def sample(self, jobs, gen, on_done):
        for j, job in enumerate(jobs):
            review = job.messages[-1].content
            shots = any(m.role == "assistant" for m in job.messages)
            truth = next(label for label, words in WORDS.items() if review.split()[-1] in words)
            answer = truth if shots else "neutral"
            on_done(j, [Sample(answer, "eos", 10, 1) for _ in job.indices])


def oracle_experiment(tmp_path, stages=LADDER, **kw):
    return experiment(tmp_path, "unused", stages=stages, model=ORACLE, **kw)


def test_stops_at_the_first_rung_that_reaches_the_target(tmp_path):
    exp = load_experiment(oracle_experiment(tmp_path))
    record, results = climb(exp, target=0.8)
    assert [r.stage for r in results] == ["zero_shot", "few_shot"]  # few_shot_max never ran
    assert record.reached and record.stopped_at == "few_shot" and not record.exhausted
    decisions = {r.stage: r for r in record.rungs}
    assert decisions["zero_shot"].decision == "go_on" and "< target 0.8" in decisions["zero_shot"].reason
    assert decisions["few_shot"].decision == "stop" and "≥ target 0.8" in decisions["few_shot"].reason
    assert decisions["few_shot_max"].decision == "not_run" and "few_shot" in decisions["few_shot_max"].reason
    assert not (tmp_path / "results/t/few_shot_max").exists()
    saved = json.loads((tmp_path / "results/t/climb.json").read_text())
    assert saved["stopped_at"] == "few_shot" and [r["decision"] for r in saved["rungs"]] == ["go_on", "stop", "not_run"]
    assert saved["rungs"][1]["ci_low"] >= 0.8 and saved["rungs"][0]["n"] == 40


def test_by_ci_low_is_stricter_than_by_value(tmp_path):
    exp = load_experiment(oracle_experiment(tmp_path))
    zero = run_experiment(exp, only=["zero_shot"])[0].metric
    target = round((zero.value + zero.ci_low) / 2, 3)  # the value reaches it, the CI's lower bound does not
    by_value, _ = climb(exp, target=target, by="value")
    assert by_value.stopped_at == "zero_shot"
    by_ci, _ = climb(exp, target=target)
    assert by_ci.rungs[0].decision == "go_on" and "more examples could settle it" in by_ci.rungs[0].reason
    assert by_ci.stopped_at == "few_shot"


def test_target_from_the_yaml_and_until(tmp_path):
    exp = load_experiment(oracle_experiment(tmp_path, escalate={"target": 0.99, "by": "value"}))
    record, _ = climb(exp, until="zero_shot")
    assert record.target == 0.99 and record.by == "value"
    assert record.stopped_at == "zero_shot" and not record.reached and not record.exhausted
    assert record.rungs[0].decision == "until" and "--until zero_shot" in record.rungs[0].reason


def test_no_rung_reaches_an_impossible_target(tmp_path):
    exp = load_experiment(oracle_experiment(tmp_path))
    record, results = climb(exp, target=1.01)
    assert len(results) == 3 and record.exhausted and not record.reached
    assert [r.decision for r in record.rungs] == ["go_on"] * 3
    summary = (tmp_path / "results/t/summary.md").read_text()
    assert "no rung reached the target" in summary  # the next-steps rule reads climb.json


def test_skip_is_recorded_and_honoured_by_run(tmp_path):
    stages = [{"type": "zero_shot"}, {"type": "few_shot", "k": 2, "skip": "shots not written yet"},
              {"type": "few_shot", "name": "few_shot_max", "k": 6}]
    exp = load_experiment(oracle_experiment(tmp_path, stages=stages))
    record, results = climb(exp, target=0.8)
    assert [r.stage for r in results] == ["zero_shot", "few_shot_max"]
    skipped = record.rungs[1]
    assert skipped.decision == "skipped" and "shots not written yet" in skipped.reason
    assert record.stopped_at == "few_shot_max"
    assert [r.stage for r in run_experiment(exp)] == ["zero_shot", "few_shot_max"]
    assert not (tmp_path / "results/t/few_shot").exists()
    manifest = json.loads((tmp_path / "results/t/manifest.json").read_text())
    assert manifest["stages"][1] == {"name": "few_shot", "type": "few_shot", "skipped": "shots not written yet"}
    planned = estimate_run(exp)["stages"]
    assert planned[1] == {"stage": "few_shot", "type": "few_shot", "skipped": "shots not written yet"}
    assert planned[2]["examples"] == 40


def test_skip_is_not_part_of_the_run_id(tmp_path):
    """Un-skipping a rung later must find results from before it was skipped (and vice versa)."""
    plan = prepare(load_experiment(oracle_experiment(tmp_path)))
    stage = plan.experiment.stages[1]
    run_id = plan.resolve(stage).run_id
    assert plan.resolve(stage.model_copy(update={"skip": "later"})).run_id == run_id
    assert plan.resolve(stage.model_copy(update={"k": 3})).run_id != run_id


def test_only_climbs_just_the_named_rungs(tmp_path):
    exp = load_experiment(oracle_experiment(tmp_path))
    record, _ = climb(exp, target=0.8, only=["few_shot_max"])
    assert [r.decision for r in record.rungs] == ["not_selected", "not_selected", "stop"]
    assert not (tmp_path / "results/t/zero_shot").exists()


@pytest.mark.parametrize("kwargs,needle", [
    ({}, "no target"), ({"target": 0.5, "until": "nope"}, "no stage named 'nope'"),
    ({"target": 0.5, "by": "mean"}, "--by mean"),
    ({"target": 0.5, "until": "zero_shot", "only": ["few_shot"]}, "not among --only"),
])
def test_bad_climb_settings_are_clear_errors(tmp_path, kwargs, needle):
    exp = load_experiment(oracle_experiment(tmp_path))
    with pytest.raises(LadderError, match=needle):
        climb(exp, **kwargs)
    assert not (tmp_path / "results").exists()


def test_escalate_and_skip_keys_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_experiment(oracle_experiment(tmp_path, escalate={"target": 0.8, "when": "now"}))
    with pytest.raises(ConfigError, match="skip"):
        load_experiment(oracle_experiment(tmp_path, stages=[{"type": "zero_shot", "skip": ""}]))


def test_decide_without_a_ci():
    result = StageResult("s", "zero_shot", "r", "choice", MetricValue(0.9, float("nan"), float("nan"), 1))
    rung = decide(StageConfig(type="zero_shot", name="s"), result, EscalateConfig(target=0.5))
    assert rung.decision == "go_on" and "ci_low nan" in rung.reason


def test_climb_command_prints_decisions_table_and_next_steps(tmp_path):
    path = oracle_experiment(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "ladder.cli", "climb", str(path), "--target", "0.8"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "reached: few_shot meets the target" in out.stdout
    assert "not run" in out.stdout and "Δ prev" in out.stdout and "Next steps" in out.stdout
    assert "evaluate at least 300" in out.stdout  # n = 40
    assert "climb · zero_shot: go on" in " ".join(out.stderr.split())
    from ladder.store import read_jsonl  # the research log has the climb, its outcome and its overrides
    (entry,) = read_jsonl(tmp_path / "results/t/log.jsonl")
    assert entry["command"] == "climb" and entry["outcome"].startswith("reached: few_shot")
    assert "--target 0.8" in entry["argv"] and [r["stage"] for r in entry["rows"]] == ["zero_shot", "few_shot"]


class Guesser(Oracle):
    """Right with shots (like Oracle); without, each sample a label picked by a hash of (review,
    sample index) — so greedy zero_shot is at chance and a best-of-8 picked by the gold answer
    nearly always holds the right one."""

    def sample(self, jobs, gen, on_done):
        for j, job in enumerate(jobs):
            review = job.messages[-1].content
            if any(m.role == "assistant" for m in job.messages):
                truth = next(label for label, words in WORDS.items() if review.split()[-1] in words)
                on_done(j, [Sample(truth, "eos", 10, 1) for _ in job.indices])
            else:
                on_done(j, [Sample(LABELS[zlib.crc32(f"{review}|{i}".encode()) % 3], "eos", 10, 1)
                            for i in job.indices])


GUESSER = {"backend": "tests.test_climb:Guesser", "name": "guesser"}
WITH_ORACLE = [{"type": "zero_shot"}, {"type": "best_of_n", "n": 8, "scorer": "metric"}, {"type": "few_shot", "k": 2}]


def test_climb_goes_past_an_oracle_that_reaches_the_target(tmp_path):
    exp = load_experiment(experiment(tmp_path, "unused", stages=WITH_ORACLE, model=GUESSER))
    record, results = climb(exp, target=0.8, by="value")
    bon = results[1]
    assert bon.oracle and bon.metric.value >= 0.8  # it did reach the target, and is an oracle
    assert [r.stage for r in results] == ["zero_shot", "best_of_n", "few_shot"]  # so the climb went on
    rungs = {r.stage: r for r in record.rungs}
    assert rungs["best_of_n"].decision == "go_on" and rungs["best_of_n"].oracle
    assert "upper bound" in rungs["best_of_n"].reason
    assert not rungs["zero_shot"].oracle and not rungs["few_shot"].oracle
    assert record.stopped_at == "few_shot" and record.reached and record.upper_bounds == ["best_of_n"]
    saved = json.loads((tmp_path / "results/t/climb.json").read_text())
    assert saved["upper_bounds"] == ["best_of_n"] and saved["rungs"][1]["oracle"] is True
    assert "oracle" in saved["outcome"]
    # metrics.json, summary.csv and summary.md say it too.
    metrics = json.loads((tmp_path / "results/t/best_of_n" / bon.run_id / "metrics.json").read_text())
    assert metrics["oracle"] is True
    with open(tmp_path / "results/t/summary.csv") as f:
        assert [row["oracle"] for row in csv.DictReader(f)] == ["False", "True", "False"]
    md = (tmp_path / "results/t/summary.md").read_text()
    assert "| best_of_n (oracle) |" in md and "| zero_shot |" in md and "(oracle): reads the test" in md


def test_climb_stops_at_an_oracle_only_under_until(tmp_path):
    exp = load_experiment(experiment(tmp_path, "unused", stages=WITH_ORACLE, model=GUESSER))
    record, results = climb(exp, target=0.8, by="value", until="best_of_n")
    assert len(results) == 2 and record.stopped_at == "best_of_n" and not record.reached
    assert record.rungs[1].decision == "until" and record.rungs[1].oracle
    # The next-steps rule about best-of-N beating the greedy rungs says it is an upper bound.
    md = (tmp_path / "results/t/summary.md").read_text()
    assert "best_of_n beats zero_shot" in md and "but it is an oracle" in md


@pytest.mark.parametrize("stage,oracle", [
    ({"type": "best_of_n"}, True),  # the default scorer is the task metric
    ({"type": "best_of_n", "scorer": "metric"}, True),
    ({"type": "best_of_n", "scorer": {"type": "exact_match"}}, True),  # any metric compares with the target
    ({"type": "best_of_n", "scorer": {"type": "judge", "model": {"backend": "openai", "name": "m"}}}, False),
    ({"type": "best_of_n", "scorer": {"type": "judge", "model": {"backend": "openai", "name": "m"},
                                      "template": "Gold: {target}\n{completion}"}}, True),
    ({"type": "zero_shot"}, False), ({"type": "few_shot", "k": 2}, False),
    ({"type": "rl"}, False),  # trains on the train split's answers: not an oracle (its best-of-N line is)
])
def test_oracle_is_declared_by_the_stage_class_from_its_config(tmp_path, stage, oracle):
    from ladder.registry import STAGES

    exp = load_experiment(oracle_experiment(tmp_path, stages=[stage]))
    cfg = exp.stages[0]
    assert STAGES.get(cfg.type).reads_test_targets(cfg) is oracle


def test_climb_exit_code_says_whether_the_target_was_reached(tmp_path):
    # Scripts read the outcome from the exit code: 3 when no rung reached the target, 0 when one did
    # (the reached case is test_climb_command_prints_decisions_table_and_next_steps).
    path = oracle_experiment(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "ladder.cli", "climb", str(path)]
    out = subprocess.run([*cmd, "--target", "1.01"], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=300)
    assert out.returncode == 3, out.stderr
    assert "not reached" in out.stdout and "Traceback" not in out.stderr
    until = subprocess.run([*cmd, "--target", "0.8", "--until", "zero_shot"], capture_output=True, text=True,
                           cwd=tmp_path, env=env, timeout=300)
    assert until.returncode == 3 and "stopped at zero_shot (--until) below the target" in until.stdout
    helped = subprocess.run([*cmd, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert "3  it was not" in helped.stdout and "0  the target was reached" in helped.stdout
