"""The sft stage: real (tiny) training through trl, the curves and guards, resume, and the OpenAI
route against the loopback fake API with the real SDK."""

from __future__ import annotations

import csv
import inspect
import json
import math
import sys
from pathlib import Path

import pytest

from ladder.config import StageConfig, load_experiment
from ladder.errors import BackendError, ConfigError
from ladder.runner import prepare, run_experiment
from ladder.stages.sft import SFTConfig, training_rows
from ladder.store import read_json, read_jsonl
from ladder.testing.fake_api import FakeAPIServer
from ladder.training.rows import template_guards
from ladder.types import Example, Message
from tests.conftest import LABELS, WORDS, experiment, make_rows, write_jsonl

FAST = {"batch_size": 8, "learning_rate": 1e-2}


pytestmark = pytest.mark.usefixtures("one_thread")


def run(tmp_path, model, stages, **kw):
    results = run_experiment(load_experiment(experiment(tmp_path, model, stages=stages, **kw)))
    with open(tmp_path / "results" / "t" / "summary.csv") as f:
        return results, list(csv.DictReader(f))


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def guard(result, name):
    return next(g for g in result.guards if g.name == name)


# -- training through the runner -------------------------------------------------------------


@pytest.mark.slow
def test_lora_run_lowers_loss_merges_and_feeds_later_stages(tmp_path, random_model):
    stages = [{"type": "zero_shot"},
              {"type": "sft", **FAST, "max_steps": 6, "eval_steps": 3, "curve_examples": 12},
              {"type": "zero_shot", "name": "on_sft", "model": {"from_stage": "sft"}}]
    results, rows = run(tmp_path, random_model, stages, n_test=24)
    assert [r["stage"] for r in rows] == ["zero_shot", "sft", "on_sft"]
    sft = results[1]
    run_dir = tmp_path / "results" / "t" / "sft" / sft.run_id
    saved = read_json(run_dir / "metrics.json")
    assert saved["metric"]["n"] == 24 and rows[1]["n"] == "24"

    training = saved["extra"]["training"]
    assert training["steps"] == 6 and training["method"] == "lora"
    assert training["train_loss_last"] < training["train_loss_first"]
    assert training["trainable_params"] < training["total_params"]
    curves = saved["extra"]["curves"]
    test_loss, test_metric = curves["test_loss"], curves["test_metric"]
    assert test_loss["x"] == test_metric["x"] == [0, 3, 6]  # step 0 is the base model, before any update
    test = test_loss["y"]["test (12 of 24 test examples)"]
    assert test[-1] < test[0]
    assert len(test_loss["y"]["test over choices"]) == 3
    assert len(test_metric["y"]["choice (12 of 24 test examples)"]) == 3  # the legend names the draw
    assert test_loss["hlines"] == {"chance −log(1/3) (loss over choices)": pytest.approx(math.log(3))}
    assert curves["train_loss"]["hlines"] == {}  # chance is for the loss over the choices only
    assert curves["train_loss"]["x"] == [1, 2, 3, 4, 5, 6]
    assert [p["step"] for p in read_jsonl(run_dir / "curves.jsonl")] == [0, 3, 6]

    # The chance-loss guard and its numbers are in metrics.json, beside accuracy.
    chance = next(g for g in saved["guards"] if g["name"] == "chance_loss")
    info = saved["extra"]["choice_loss"]
    assert info["chance_loss"] == pytest.approx(math.log(3))
    assert chance["value"] == pytest.approx(info["choice_loss"])
    if info["choice_loss"] >= min(math.log(3), info.get("label_entropy", math.inf)):  # ok needs both, by a margin
        assert chance["level"] == "warn"
    if chance["level"] == "ok":
        assert info["choice_loss"] < min(math.log(3), info.get("label_entropy", math.inf))
    assert ("chance_loss" in rows[1]["flags"]) == (chance["level"] == "warn")
    assert any(g["name"] == "termination" for g in saved["guards"])

    # Saved merged: a plain model folder (no adapter), the same tensor names, changed weights.
    model_dir = Path(saved["extra"]["model"]["name"])
    assert model_dir == (run_dir / "model").resolve()
    assert not (model_dir / "adapter_config.json").exists()
    assert (model_dir / "tokenizer_config.json").exists()
    base, tuned = weights(random_model), weights(model_dir)
    assert base.keys() == tuned.keys()
    changed = [k for k in base if not (base[k] == tuned[k]).all()]
    assert changed and all("proj" in k for k in changed)  # LoRA touched the linear layers only

    # A later rung evaluates the finetuned model: same prompts, greedy, so the same answers.
    on_sft = read_json(tmp_path / "results" / "t" / "on_sft" / results[2].run_id / "stage.json")
    assert on_sft["model"]["name"] == str(model_dir)
    assert results[2].metric.value == sft.metric.value


@pytest.mark.slow
def test_full_finetuning_in_a_launched_process(tmp_path, random_model):
    # `launch` runs the trainer as `<command> -m ladder.training.sft_local spec.json`: the same path
    # `accelerate launch` takes on many GPUs. Here the command is plain python, one process.
    stages = [{"type": "sft", **FAST, "method": "full", "max_steps": 4, "curves": False,
               "launch": sys.executable}]
    results, rows = run(tmp_path, random_model, stages, n_test=12)
    training = results[0].extra.training
    assert training["method"] == "full" and training["trainable_params"] == training["total_params"]
    assert training["train_loss_last"] < training["train_loss_first"]
    base, tuned = weights(random_model), weights(results[0].extra.model["name"])
    assert all(not (base[k] == tuned[k]).all() for k in base if "layers" in k and "proj" in k)
    assert rows[0]["stage"] == "sft" and set(results[0].extra.curves) == {"train_loss"}


def one_label_data(tmp_path):
    """Data a model can learn in a few steps: every answer is 'negative' — which the base model
    ranks below 'positive' (one token against two), so it starts far above chance."""
    rows = [{"text": r["text"], "label": "negative"} for r in make_rows(48)]
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    write_jsonl(tmp_path / "data" / "test.jsonl", rows[:12])


@pytest.mark.slow
@pytest.mark.parametrize("lr, level", [(0.0, "warn"), (1e-2, "ok")])
def test_chance_loss_guard(tmp_path, random_model, lr, level):
    path = experiment(tmp_path, random_model, stages=[
        {"type": "sft", "method": "full", "batch_size": 8, "learning_rate": lr, "max_steps": 12, "curves": False}])
    one_label_data(tmp_path)
    result = run_experiment(load_experiment(path))[0]
    g = guard(result, "chance_loss")
    assert g.level == level, g.message
    assert (g.value < math.log(3)) == (level == "ok")
    if lr == 0:  # nothing moved: the model is the base model, and the flag reaches the table
        base, tuned = weights(random_model), weights(result.extra.model["name"])
        assert all((base[k] == tuned[k]).all() for k in base)
        assert "chance_loss" in (tmp_path / "results" / "t" / "summary.csv").read_text()


@pytest.mark.slow
def test_interrupted_training_resumes_from_the_last_checkpoint(tmp_path, random_model, monkeypatch):
    from tests.training.interrupt import interrupted_then_resumed

    stages = [{"type": "sft", **FAST, "max_steps": 4, "save_steps": 1, "curves": False}]
    (results, _), steps_run = interrupted_then_resumed(
        monkeypatch, lambda: run(tmp_path, random_model, stages, n_test=8), step=2)
    training = results[0].extra.training
    assert training["resumed_from"] == "checkpoint-2"
    assert steps_run == [3, 4] and training["steps"] == 4
    assert guard(results[0], "resumed").level == "info"


@pytest.mark.slow
def test_trains_on_an_exported_data_file_instead_of_the_train_split(tmp_path, random_model):
    rows = [{"prompt": [{"role": "system", "content": "Classify the sentiment of the review."},
                        {"role": "user", "content": f"Review: the soup {i} was superb"}],
             "completion": [{"role": "assistant", "content": "positive"}]} for i in range(12)]
    write_jsonl(tmp_path / "bon" / "sft.jsonl", rows)
    stages = [{"type": "sft", **FAST, "data": "bon/sft.jsonl", "max_steps": 1, "curves": False}]
    results, _ = run(tmp_path, random_model, stages, n_test=8)
    assert results[0].stats.train_examples == 12
    trained_on = read_jsonl(tmp_path / "results" / "t" / "sft" / results[0].run_id / "train.jsonl")
    assert trained_on == [{k: r[k] for k in ("prompt", "completion")} for r in rows]
    assert not any(g.name == "train_test_overlap" for g in results[0].guards)


# -- the OpenAI route, over real HTTP -----------------------------------------------------------


def openai_experiment(tmp_path, srv, monkeypatch, sft=None):
    monkeypatch.setenv("LADDER_TEST_OPENAI_KEY", "sk-test")
    model = {"backend": "openai", "name": "gpt-4o-mini", "base_url": srv.openai_base_url,
             "api_key_env": "LADDER_TEST_OPENAI_KEY", "max_retries": 0}
    stages = [{"type": "zero_shot"}, {"type": "sft", "epochs": 2, "poll_interval": 0.01, **(sft or {})}]
    return experiment(tmp_path, "unused", stages=stages, model=model)


def answering(asked):
    """Fine-tuned models answer right; the base model always says 'neutral'."""
    def respond(req, i):
        asked.append(req.model)
        if not req.model.startswith("ft:"):
            return "neutral"
        word = req.prompt.rsplit(" ", 1)[-1]  # make_rows: "the meal 3 was <word>"
        return next(label for label, words in WORDS.items() if word in words)
    return respond


def test_openai_route_end_to_end_and_resumes_the_recorded_job(tmp_path, monkeypatch):
    import ladder.training.sft_openai as sft_openai

    asked: list[str] = []
    with FakeAPIServer(responder=answering(asked)) as srv:
        srv.app.fine_tuning.polls = 3
        path = openai_experiment(tmp_path, srv, monkeypatch)

        # Ctrl-C while waiting for the job: the job id is already on disk.
        def interrupted(client, job_id, interval, name):
            client.fine_tuning.jobs.retrieve(job_id)
            raise KeyboardInterrupt

        monkeypatch.setattr(sft_openai, "poll", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_experiment(load_experiment(path))
        calls = dict(srv.app.fine_tuning.calls)
        assert calls == {"POST /files": 1, "POST /fine_tuning/jobs": 1, "GET /fine_tuning/jobs/{id}": 1}
        monkeypatch.undo()

        results = run_experiment(load_experiment(openai_experiment(tmp_path, srv, monkeypatch)))
        calls = srv.app.fine_tuning.calls
        assert calls["POST /files"] == 1 and calls["POST /fine_tuning/jobs"] == 1  # nothing new
        assert calls["GET /fine_tuning/jobs/{id}"] == 3

        (job,) = srv.app.fine_tuning.jobs.values()
        uploaded = [json.loads(line) for line in srv.app.fine_tuning.contents[job["training_file"]].splitlines()]

    assert len(uploaded) == 60  # the train split, in chat format, answer last
    assert uploaded[0]["messages"][0] == {"role": "system", "content": "Classify the sentiment of the review."}
    assert uploaded[0]["messages"][-1]["role"] == "assistant" and uploaded[0]["messages"][-1]["content"] in LABELS
    assert job["hyperparameters"]["n_epochs"] == 2 and job["metadata"] == {"ladder_run": results[1].run_id}

    zero, sft = results
    ft = f"ft:gpt-4o-mini:ladder::{job['id']}"
    saved = read_json(tmp_path / "results" / "t" / "sft" / sft.run_id / "metrics.json")
    assert saved["extra"]["openai"]["job_id"] == job["id"]
    assert saved["extra"]["openai"]["fine_tuned_model"] == ft
    assert saved["extra"]["model"] == {"backend": "openai", "name": ft}
    assert asked.count(ft) == 40  # the evaluation asked the fine-tuned model, once per test example
    assert sft.metric.value == 1.0 and zero.metric.value < 0.5
    assert guard(sft, "chance_loss").level == "info"  # chat APIs give no log-probs of given answers


def test_openai_job_failure_is_reported_with_its_reason(tmp_path, monkeypatch):
    import ladder.training.sft_openai as sft_openai

    with FakeAPIServer() as srv:
        monkeypatch.setattr(sft_openai, "chat_jsonl", lambda rows: "not json\n" * len(rows))
        with pytest.raises(BackendError, match="failed: line 1"):
            run_experiment(load_experiment(openai_experiment(tmp_path, srv, monkeypatch)))
        assert srv.app.fine_tuning.calls["POST /fine_tuning/jobs"] == 1


# -- data, template, config: fast ------------------------------------------------------------


def test_train_rows_are_rendered_like_the_prompting_stages(tmp_path, random_model):
    path = experiment(tmp_path, random_model, stages=[{"type": "sft"}])
    plan = prepare(load_experiment(path))
    ctx = plan.context(plan.resolve(plan.experiment.stages[0], planning=True), cache=None)
    rows, guards = training_rows(ctx, ctx.stage)
    train = plan.task.examples("train")
    assert len(rows) == len(train)
    assert rows[0].prompt == plan.task.render(train[0]) and rows[0].completion == train[0].target
    # make_rows repeats some reviews across splits: those are flagged, not silently trained on.
    test_prompts = {json.dumps([m.to_dict() for m in plan.task.render(e)]) for e in plan.examples}
    overlap = sum(json.dumps([m.to_dict() for m in r.prompt]) in test_prompts for r in rows)
    assert overlap > 0 and guards[0].name == "train_test_overlap" and guards[0].value == overlap
    assert [g.level for g in template_guards(ctx.backend, rows[0])] == ["ok"]


@pytest.mark.parametrize("stage, message", [
    ({"learning_rat": 1e-3}, "unknown key"),
    ({"trainer_args": {"learning_rate": 1e-3}}, "set by the stage"),
    ({"trainer_args": {"warmup_stepz": 0.1}}, "unknown trl SFTConfig key"),
    ({"route": "openai", "learning_rate": 1e-3}, "only apply to the local route"),
    ({"route": "openai", "epochs": 1.5}, "whole epochs"),
    ({"route": "local", "learning_rate_multiplier": 2}, "learning_rate_multiplier is for the openai"),
    ({"lora": {"r": 0}}, "greater than or equal to 1"),
])
def test_config_errors(tmp_path, stage, message):
    path = experiment(tmp_path, "m", stages=[{"type": "sft", **stage}])
    with pytest.raises(ConfigError, match=message):
        load_experiment(path)


def test_config_accepts_trainer_args_and_documents_every_field():
    cfg = SFTConfig(trainer_args={"warmup_steps": 10, "lr_scheduler_type": "cosine"})
    assert cfg.trainer_args["warmup_steps"] == 10
    for name in set(SFTConfig.model_fields) - set(StageConfig.model_fields):
        # Read the docstring where the field is declared (report_to: the training stages' shared base).
        owner = next(c for c in SFTConfig.__mro__ if name in c.__dict__.get("__annotations__", {}))
        text = Path(inspect.getsourcefile(owner)).read_text()
        after = text.split(f"    {name}:", 1)[1].split("\n", 2)[1]
        assert after.strip().startswith('"""'), name


def _chance_guard_with(tmp_path, examples, prob):
    """sft's chance guard over `examples`, the finetuned model giving choice c after the prompt of
    example e the log-probability log prob(e.id, c) (normalised over the choices by the guard)."""
    from types import SimpleNamespace

    from ladder.cache import Cache
    from ladder.stages import Prompt
    from ladder.stages.sft_guards import chance_guard

    def lps(prompts, conts):
        return [math.log(prob(p[0].content, c)) for p, c in zip(prompts, conts)]

    backend = SimpleNamespace(config=SimpleNamespace(backend="fake"), fingerprint="fake", supports_logprobs=True,
                              continuation_logprobs=lps)
    ctx = SimpleNamespace(backend=backend, cache=Cache(tmp_path / "cache"))
    return chance_guard(ctx, [Prompt(ex, [Message("user", ex.id)]) for ex in examples])


def test_chance_loss_against_the_label_entropy_with_a_margin(tmp_path):
    """SST-2 after sft with defaults: 55% positive, and a model that learned only that (p(positive)
    = 0.56 everywhere) has loss 0.688 — under chance log 2 = 0.693, at the labels' entropy 0.688.
    Not "ok": it beat uniform chance only, and the message says which it beat, with its margin."""
    two = ("negative", "positive")
    examples = [Example(f"e{i}", {}, "positive" if i < 165 else "negative", two) for i in range(300)]
    g, info = _chance_guard_with(tmp_path, examples, lambda e, c: {"positive": 0.56, "negative": 0.44}[c])
    entropy = -(0.55 * math.log(0.55) + 0.45 * math.log(0.45))
    assert info["label_entropy"] == pytest.approx(entropy) and abs(info["choice_loss"] - 0.6884) < 1e-3
    assert g.level == "warn", g.message
    assert "not clearly below chance −log(1/2) = 0.693 by 0.005 (95% CI" in g.message
    assert "not below the label distribution's entropy 0.688" in g.message
    # 80/20 labels, the model learned the 80/20 shares and nothing else: loss 0.500, clearly under
    # chance 0.693, exactly the entropy — beating chance alone is not learning the task.
    skewed = [Example(f"s{i}", {}, "positive" if i < 240 else "negative", two) for i in range(300)]
    g, info = _chance_guard_with(tmp_path / "s", skewed, lambda e, c: {"positive": 0.8, "negative": 0.2}[c])
    assert g.level == "warn" and info["choice_loss"] == pytest.approx(info["label_entropy"])
    assert "is below chance −log(1/2) = 0.693 by 0.193 (95% CI" in g.message
    assert "not below the label distribution's entropy 0.500" in g.message and "only how often each label" in g.message
    # A model that tells the examples apart (0.8 on the target) beats both, each with its margin.
    target = {ex.id: ex.target for ex in examples}
    g, info = _chance_guard_with(tmp_path / "b", examples, lambda e, c: 0.8 if c == target[e] else 0.2)
    assert g.level == "ok", g.message
    assert "below chance −log(1/2) = 0.693 by 0.470" in g.message and "below the label distribution's entropy" in g.message
    # Exactly chance: no margin at all.
    mixed = [Example(f"m{i}", {}, "ab"[i % 2], ("a", "b")) for i in range(40)]
    g, _ = _chance_guard_with(tmp_path / "c", mixed, lambda e, c: 0.5)
    assert g.level == "warn" and "not below chance" in g.message
    # One label in the test set: no label distribution to beat, chance only.
    g, info = _chance_guard_with(tmp_path / "d", examples[:165], lambda e, c: 0.8 if c == "positive" else 0.2)
    assert g.level == "ok" and "label_entropy" not in info


def test_chance_loss_uses_each_examples_own_k(tmp_path):
    """Per-example choices (2 here, 4 there): chance is the mean of log K_i over the examples
    evaluated, not log K of the first example — which would call this model worse than chance."""
    from types import SimpleNamespace

    from ladder.cache import Cache
    from ladder.stages import Prompt
    from ladder.stages.sft_curves import curve_specs
    from ladder.stages.sft_guards import chance_guard

    two, four = ("yes", "no"), ("a", "b", "c", "d")
    examples = [Example(f"{x}{i}", {}, t, c) for i in range(10) for x, t, c in (("x", "yes", two), ("y", "a", four))]
    # The target gets 0.55 of 2 and 0.3 of 4: a little better than chance on both.
    probs = {"yes": 0.55, "no": 0.45, "a": 0.3, "b": 0.7 / 3, "c": 0.7 / 3, "d": 0.7 / 3}
    backend = SimpleNamespace(config=SimpleNamespace(backend="fake"), fingerprint="fake", supports_logprobs=True,
                              continuation_logprobs=lambda prompts, conts: [math.log(probs[c]) for c in conts])
    ctx = SimpleNamespace(backend=backend, cache=Cache(tmp_path / "cache"))
    prompts = [Prompt(ex, [Message("user", ex.id)]) for ex in examples]
    guard, info = chance_guard(ctx, prompts)
    chance = (math.log(2) + math.log(4)) / 2
    assert info["chance_loss"] == pytest.approx(chance)
    assert info["choice_loss"] == pytest.approx((-math.log(0.55) - math.log(0.3)) / 2)
    assert info["choice_loss"] > math.log(2)  # above the first example's chance...
    assert guard.level == "ok" and "mean −log(1/K)" in guard.message  # ...but below the examples' chance
    assert "label_entropy" not in info  # per-example choices: no label distribution to compare with
    # The curve's chance line is drawn from the examples' own choices (the task has none).
    points = [{"step": 0, "test_loss": 1.0, "metric": 0.5, "stop_rate": 1.0, "choice_loss": 1.0}]
    curves = curve_specs(points, [], "choice", examples)
    assert list(curves["test_loss"]["hlines"].values()) == [pytest.approx(chance)]
    assert curve_specs(points, [], "choice", [Example("z", {}, "t")])["test_loss"]["hlines"] == {}


# -- curves that cost less than training ---------------------------------------------------------


@pytest.mark.slow
def test_curves_take_step_0_from_the_cache_and_the_last_point_from_the_final_evaluation(
        tmp_path, random_model, monkeypatch):
    """After zero_shot, step 0's greedy answers are cache hits; the trainer generates only at the
    evaluations in between (not at step 0, not at the last step); the last point is the stage's
    final evaluation on the curve's examples; a re-run over the model trained earlier gets the
    same complete curve without training or generating in the trainer."""
    import random

    import ladder.training.sft_local as sft_local

    generated_at: list[int] = []
    original = sft_local.CurveCallback.measure

    def counting(self):
        generated_at.append(self.trainer.state.global_step)
        return original(self)

    monkeypatch.setattr(sft_local.CurveCallback, "measure", counting)
    stages = [{"type": "zero_shot"},
              {"type": "sft", **FAST, "method": "full", "max_steps": 4, "eval_steps": 2, "curve_examples": 10}]
    results, _ = run(tmp_path, random_model, stages, n_test=24)
    sft = results[1]
    run_dir = tmp_path / "results" / "t" / "sft" / sft.run_id
    assert generated_at == [2]  # old behaviour: [0, 2, 4]

    # The curve's examples: a seeded draw of 10 of the 24, in the subsample's order, recorded.
    spec = read_json(run_dir / "train_spec.json")["curve"]
    ids = [f"test-{i}" for i in range(24)]  # the whole test split, in its order
    draw = [ids[i] for i in sorted(random.Random(0).sample(range(24), 10))]
    assert [e["id"] for e in spec["examples"]] == draw != ids[:10]
    assert sft.extra.training["curve_examples"] == {"n": 10, "of": 24, "seed": 0}

    lines = read_jsonl(run_dir / "curves.jsonl")
    assert [p["step"] for p in lines] == [0, 2, 4]
    assert lines[0]["samples"] == {"cached": 10, "generated": 0}  # zero_shot's answers
    assert "metric" in lines[1] and "metric" not in lines[2]  # the trainer's last point: test loss only

    curves = sft.extra.curves
    metric = curves["test_metric"]["y"]["choice (10 of 24 test examples)"]
    assert len(metric) == 3 and None not in metric
    # The last point is the final evaluation's answers on those 10 examples: the same scores.
    scores = {r["id"]: r["score"] for r in read_jsonl(run_dir / "samples.jsonl")}
    assert metric[-1] == pytest.approx(sum(scores[i] for i in draw) / 10)
    assert None not in curves["test_loss"]["y"]["test over choices"]
    assert len(curves["test_loss"]["y"]["test (10 of 24 test examples)"]) == 3

    # Re-run with the model trained earlier: nothing trains or generates, the curve is whole again.
    (run_dir / "metrics.json").unlink()
    (run_dir / "samples.jsonl").unlink()
    generated_at.clear()
    again, _ = run(tmp_path, random_model, stages, n_test=24)
    assert generated_at == [] and again[1].extra.curves == curves


@pytest.mark.slow
def test_curve_choice_loss_comes_from_the_greedy_generation_first_step(tmp_path, random_model, monkeypatch):
    """With one-token choices, the mid-run point's choice loss and accuracy are read from the
    greedy generation's first step: the same as a separate forward pass over the prompts
    (continuation_logprobs, right-padded) within float rounding, and that pass is no longer made."""
    import ladder.training.sft_local as sft_local
    from ladder.backends.hf import HFBackend
    from ladder.training.choices import choice_loss, choice_queries

    forward_passes: list[int] = []
    original_next = HFBackend._next_token_logprobs

    def counting_next(self, rows, which, out):
        forward_passes.append(len(which))
        return original_next(self, rows, which, out)

    monkeypatch.setattr(HFBackend, "_next_token_logprobs", counting_next)
    compared: list[tuple[dict, dict, list[str]]] = []
    original_scores = sft_local.CurveCallback._scores

    def checked(self):
        forward_passes.clear()
        new = original_scores(self)
        assert forward_passes == []  # no second pass over the curve's prompts
        queries = choice_queries(self.prompts, self.examples)
        old = choice_loss(self.backend.continuation_logprobs(*queries), self.examples)
        assert forward_passes == [len(queries[0])]  # the old path, for comparison, does make it
        self.backend.first_steps = {}
        try:
            watched = sft_local.sample_all(self.backend, self.prompts, self.gen)
            assert len(self.backend.first_steps) == len({tuple(map(str, p)) for p in self.prompts})
        finally:
            self.backend.first_steps = None
        plain = sft_local.sample_all(self.backend, self.prompts, self.gen)
        compared.append((new, old, [(a.text, a.finish_reason, b.text, b.finish_reason)
                                    for a, b in zip(watched, plain)]))
        return new

    monkeypatch.setattr(sft_local.CurveCallback, "_scores", checked)
    stages = [{"type": "sft", **FAST, "method": "lora", "max_steps": 4, "eval_steps": 2,
               "curve_examples": 10}]
    # One-token choices (this tokenizer splits "negative" and "neutral"): single letters.
    letter = dict(zip(LABELS, "xyz"))
    task = {"data": {"train": "data/train.jsonl", "test": "data/test.jsonl"}, "target": "label",
            "instruction": "Classify the sentiment of the review.", "template": "Review: {text}",
            "choices": list("xyz")}
    path = experiment(tmp_path, random_model, stages=stages, n_test=24, task=task)
    for name, n, seed in (("train", 60, 1), ("test", 24, 2)):
        write_jsonl(tmp_path / "data" / f"{name}.jsonl",
                    [{**r, "label": letter[r["label"]]} for r in make_rows(n, seed=seed)])
    results = run_experiment(load_experiment(path))
    assert len(compared) == 1  # step 2; step 0 and the last step generate nothing in the trainer
    new, old, samples = compared[0]
    assert new["choice_loss"] == pytest.approx(old["choice_loss"], abs=1e-4)
    assert new["choice_accuracy"] == pytest.approx(old["choice_accuracy"], abs=1e-4)
    run_dir = tmp_path / "results" / "t" / "sft" / results[0].run_id
    point = [p for p in read_jsonl(run_dir / "curves.jsonl") if p["step"] == 2][0]
    assert point["choice_loss"] == new["choice_loss"]
    # The watched generation's samples are the plain one's: greedy, unchanged.
    assert len(samples) == 10 and all(a == c and r == q for a, r, c, q in samples)


@pytest.mark.slow
def test_curve_step_0_generates_once_without_zero_shot_and_greedily_for_a_sampling_stage(tmp_path, random_model):
    """Alone, the stage generates step 0's answers itself (once, through the cache); with
    temperature 1 in the stage's generation the final point is still greedy (the termination
    guard's greedy answers, so the final point generates nothing new)."""
    stages = [{"type": "sft", **FAST, "max_steps": 2, "eval_steps": 1, "curve_examples": "all",
               "generation": {"temperature": 1.0}}]
    results, _ = run(tmp_path, random_model, stages, n_test=8)
    run_dir = tmp_path / "results" / "t" / "sft" / results[0].run_id
    lines = read_jsonl(run_dir / "curves.jsonl")
    assert lines[0]["samples"] == {"cached": 0, "generated": 8}
    assert results[0].extra.training["curve_examples"] == {"n": 8, "of": 8, "seed": 0}
    assert "choice" in results[0].extra.curves["test_metric"]["y"]  # the whole subsample: no note
    # The final point's samples are the greedy ones the termination guard asked for.
    final = results[0].extra.curves["test_metric"]["y"]["stopped (EOS or stop)"][-1]
    assert final == pytest.approx(guard(results[0], "termination").value)


def test_curve_examples_are_a_seeded_draw_in_subsample_order(tmp_path, random_model):
    import random

    from ladder.stages.sft import CURVE_EXAMPLES, curve_examples

    path = experiment(tmp_path, random_model, stages=[{"type": "sft"}], n_test=40)
    plan = prepare(load_experiment(path))
    ctx = plan.context(plan.resolve(plan.experiment.stages[0], planning=True), cache=None)
    assert CURVE_EXAMPLES >= 40 and curve_examples(ctx, SFTConfig()) == ctx.examples  # small: all of them
    assert curve_examples(ctx, SFTConfig(curve_examples="all")) == ctx.examples
    ten = curve_examples(ctx, SFTConfig(curve_examples=10))
    keep = sorted(random.Random(0).sample(range(40), 10))
    assert ten == [ctx.examples[i] for i in keep] and ten != ctx.examples[:10]
    assert curve_examples(ctx, SFTConfig(curve_examples=10, seed=5)) == ten  # the experiment's seed, not training's
    other = prepare(load_experiment(experiment(tmp_path, random_model, stages=[{"type": "sft"}], n_test=40, seed=3)))
    octx = other.context(other.resolve(other.experiment.stages[0], planning=True), cache=None)
    assert [e.id for e in curve_examples(octx, SFTConfig(curve_examples=10))] != [e.id for e in ten]
    with pytest.raises(ValueError):
        SFTConfig(curve_examples=0)


def test_curve_legend_names_the_draw_and_chance_stays_off_the_train_loss():
    from ladder.report_curves import stage_curves
    from ladder.stages.sft_curves import curve_specs
    from ladder.types import MetricValue, StageResult

    three = ("positive", "negative", "neutral")
    examples = [Example(str(i), {}, "positive", three) for i in range(100)]
    points = [{"step": s, "test_loss": 1.0, "metric": 0.5, "stop_rate": 1.0, "choice_loss": 0.9,
               "choice_accuracy": 0.5} for s in (0, 5)]
    specs = curve_specs(points, [[1, 2.0], [2, 1.5]], "choice", examples, 300)
    assert set(specs["test_metric"]["y"]) == {"choice (100 of 300 test examples)", "stopped (EOS or stop)",
                                              "target ranks first"}
    extra = {"curves": specs, "choice_loss": {"choice_loss": 0.9, "chance_loss": math.log(3)}}
    r = StageResult("sft", "sft", "r", "choice", MetricValue(0.5, 0.4, 0.6, 300), extra=extra)
    curves = {c.name: c for c in stage_curves(r)}
    assert curves["train_loss"].hlines == {}  # the report's guess from extra.choice_loss stays off it
    assert curves["test_loss"].hlines == {"chance −log(1/3) (loss over choices)": pytest.approx(math.log(3))}
    assert curves["test_metric"].hlines == {}


@pytest.mark.slow
def test_curves_of_a_probability_metric_are_read_from_the_weights(tmp_path, random_model):
    """metric: choice_prob reads the model's probabilities, not a completion: the point the trainer
    measures between the ends scores it from the weights in memory (it raised TypeError), and the
    curve's metric line has a value at every point, each a probability."""
    stages = [{"type": "sft", **FAST, "method": "full", "max_steps": 4, "eval_steps": 2, "curve_examples": 6}]
    results, _ = run(tmp_path, random_model, stages, n_test=12, metric={"type": "choice_prob"})
    sft = results[0]
    run_dir = tmp_path / "results" / "t" / "sft" / sft.run_id
    lines = read_jsonl(run_dir / "curves.jsonl")
    assert [p["step"] for p in lines] == [0, 2, 4] and 0.0 < lines[1]["metric"] < 1.0
    (line,) = [v for k, v in sft.extra.curves["test_metric"]["y"].items() if k.startswith("choice_prob")]
    assert len(line) == 3 and all(0.0 < v < 1.0 for v in line)
