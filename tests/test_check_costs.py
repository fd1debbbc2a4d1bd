"""`ladder check` counts and prices a plan without any API key, ends its table with a TOTAL row,
counts a judge's tokens where it counts its cost, bills a scorer that is the metric's own judge
once, and prices OpenAI fine-tuning (the job's training tokens and the fine-tuned model's calls)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from ladder import commands
from ladder.config import load_experiment
from ladder.reach import reachability
from ladder.backends.prices import model_entry, training_price
from ladder.fine_tune_price import auto_epochs
from ladder.plan_print import _print_plan
from tests.conftest import REPO, experiment

GSM8K = REPO / "configs" / "gsm8k_openai.yaml"
SAMPLE = REPO / "tests" / "data" / "gsm8k"
SETS = [f"task.data.train={SAMPLE / 'train.jsonl'}", f"task.data.test={SAMPLE / 'test.jsonl'}"]
NO_KEYS = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**NO_KEYS, "PYTHONPATH": str(REPO), "COLUMNS": "160", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "ladder.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_check_without_a_key_prices_the_plan_with_a_total_and_run_still_refuses(tmp_path):
    sets = [a for s in [*SETS, f"results_dir={tmp_path / 'results'}"] for a in ("--set", s)]
    checked = cli("check", str(GSM8K), *sets, cwd=tmp_path)
    out = checked.stdout
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "config and data OK" in out and "Traceback" not in checked.stderr
    warnings = [line for line in out.splitlines() if "missing_key" in line]
    assert len(warnings) == 1 and "warn missing_key: OPENAI_API_KEY is not set" in warnings[0], out
    # The TOTAL row sums the stages' rows, as the JSON plan has them.
    plan = json.loads(cli("check", str(GSM8K), *sets, "--json", "--offline", cwd=tmp_path).stdout)
    total = next(line for line in out.splitlines() if "TOTAL" in line)
    cells = [c.strip() for c in re.split(r"[│|]", total) if c.strip()]
    stages = plan["stages"]
    assert cells[1:5] == [f"{sum(s['samples'] for s in stages):,}", f"{sum(s['prompt_tokens'] for s in stages):,}",
                          f"{sum(s['max_output_tokens'] for s in stages):,}",
                          f"{sum(s['cost_usd'] for s in stages):.4f}*"], total
    assert sum(s["cost_usd"] for s in stages) > 0  # priced without the key
    ran = cli("run", str(GSM8K), *sets, cwd=tmp_path)
    assert ran.returncode == 2 and "OPENAI_API_KEY is not set" in ran.stderr, ran.stderr
    assert not (tmp_path / "results").exists()  # refused before anything was written


def _judged(tmp_path, metric_judge, stages, metric=None):
    """An open-ended task on an OpenAI policy (no key set anywhere), scored by `metric` or a judge."""
    path = experiment(tmp_path, "unused", stages=stages,
                      model={"backend": "openai", "name": "gpt-4o-mini"},
                      task={"data": {"train": "data/train.jsonl", "test": "data/test.jsonl"}, "target": None,
                            "instruction": "Reply to the review.", "template": "Review: {text}"},
                      metric=metric or metric_judge)
    return commands.check(path, offline=True)


JUDGE = {"type": "judge", "criteria": "The reply is polite.", "scale": "yes_no",
         "model": {"backend": "openai", "name": "gpt-4o-mini", "api_key_env": "JUDGE_API_KEY"}}


def test_judge_tokens_count_in_the_tokens_columns_and_its_missing_key_is_said(tmp_path, monkeypatch):
    for k in ("OPENAI_API_KEY", "JUDGE_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    judged = _judged(tmp_path / "a", JUDGE, [{"type": "zero_shot"}])
    plain = _judged(tmp_path / "b", JUDGE, [{"type": "zero_shot"}],
                    metric={"type": "python", "function": "ladder.metrics.behaviours:upbeat"})
    j, p = judged["stages"][0], plain["stages"][0]
    assert j["scorer"]["prompt_tokens"] > 0
    assert j["prompt_tokens"] == p["prompt_tokens"] + j["scorer"]["prompt_tokens"]
    assert j["max_output_tokens"] == p["max_output_tokens"] + j["scorer"]["max_output_tokens"]
    said = [g["message"] for g in judged["guards"] if g["name"] == "missing_key"]
    assert len(said) == 2 and any(m.startswith("JUDGE_API_KEY is not set") for m in said), said
    # The live look cannot probe without the key, and says which one is missing for each model.
    rows, failed = reachability(load_experiment(tmp_path / "a" / "exp.yaml"))
    assert failed is None and {(r["field"], r["status"], r["message"]) for r in rows} == {
        ("model", "not probed", "OPENAI_API_KEY is not set"),
        ("metric.model", "not probed", "JUDGE_API_KEY is not set")}


def test_a_best_of_n_scorer_identical_to_the_metric_judge_is_billed_once(tmp_path, monkeypatch):
    for k in ("OPENAI_API_KEY", "JUDGE_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    same = _judged(tmp_path / "a", JUDGE, [{"type": "best_of_n", "n": 4, "scorer": JUDGE}])["stages"][0]
    metric = _judged(tmp_path / "b", JUDGE, [{"type": "best_of_n", "n": 4, "scorer": "metric"}])["stages"][0]
    # `scorer: metric` and the same judge written out are the same calls: 40 examples × 4 samples.
    assert same["scorer"]["calls"] == metric["scorer"]["calls"] == 40 * 4
    assert same["cost_usd"] == pytest.approx(metric["cost_usd"])


def test_fine_tuned_models_and_training_have_prices():
    base, tuned = model_entry("gpt-4o-mini"), model_entry("ft:gpt-4o-mini-2024-07-18:my-org:sent:AbC123")
    assert tuned is not None and (tuned["input"], tuned["output"]) == (0.30, 1.20)  # twice the base model's
    assert tuned["context"] == base["context"]
    assert training_price("gpt-4o-mini-2024-07-18") == 3.00 and training_price("gpt-5") is None
    assert model_entry("ft:unknown-model:org::x") is None
    assert [auto_epochs(n) for n in (10, 30, 1000, 10_000, 100_000)] == [10, 3, 3, 2, 1]


def test_check_prices_an_openai_fine_tuning_job_and_the_model_it_makes(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    stages = [{"type": "zero_shot"}, {"type": "sft", "epochs": 2},
              {"type": "zero_shot", "name": "after", "model": {"from_stage": "sft"}}]
    plan = commands.check(GSM8K, [*SETS, f"results_dir={tmp_path}", "stages=" + json.dumps(stages)], offline=True)
    zero, sft, after = plan["stages"]
    job = sft["fine_tuning"]
    assert job["epochs"] == 2 and job["tokens"] > 0
    assert job["cost_usd"] == pytest.approx(job["tokens"] * 2 * 3.00 / 1e6)
    # The fine-tuned model's calls cost its own prices: 0.30 / 1.20 per 1M, twice gpt-4o-mini's.
    assert after["cost_usd"] == pytest.approx(2 * zero["cost_usd"])
    assert sft["cost_usd"] == pytest.approx(2 * zero["cost_usd"] + job["cost_usd"])


def _plan(stages):
    return {"experiment": "e", "results": "r", "guards": [], "stages": stages, "power": {"n": 0}}


def _stage(name, cost, **more):
    return {"stage": name, "model": "m", "examples": 10, "samples": 10, "prompt_tokens": 1000,
            "max_output_tokens": 100, "cost_usd": cost, "cost_usd_standard": cost, "cost_usd_batch": cost / 2,
            "batch": False, **more}


def test_no_cached_price_line_when_it_rounds_to_the_same_figure(capsys):
    _print_plan(_plan([_stage("few_shot", 0.00121, cost_usd_cached=0.00120, prefix_tokens=1100),
                       _stage("few_shot_max", 0.0100, cost_usd_cached=0.0060, prefix_tokens=1500)]))
    out = " ".join(capsys.readouterr().out.split())
    assert "few_shot: its prompts share" not in out  # $0.0012 instead of $0.0012 says nothing
    assert "few_shot_max: its prompts share their first ~1,500 tokens" in out and "$0.0060 instead of $0.0100" in out


def test_total_row_marks_the_batch_total_when_every_stage_is_batched(capsys):
    batched = [_stage(n, 0.01, batch=True, cost_usd_standard=0.02, cost_usd_batch=0.01) for n in ("a", "b")]
    _print_plan(_plan(batched))
    total = next(line for line in capsys.readouterr().out.splitlines() if "TOTAL" in line)
    assert "0.0400 " in total and "0.0200*" in total and "0.0400*" not in total
