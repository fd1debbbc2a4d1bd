"""Scorers against hand computations on tiny models made here: classifier, PM, judge, python."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ladder.cache import Cache
from ladder.config import load_experiment
from ladder.errors import ConfigError
from ladder.runner import prepare
from ladder.scorers import build_scorer
from ladder.scorers.judge import parse_verdict
from ladder.types import Example, Message, Score
from tests.conftest import experiment
from tests.scorers.scripted import ScriptedBackend

POLICY = {"backend": "tests.scorers.scripted:ScriptedBackend", "name": "policy"}
FIELD = "stages.best_of_n.scorer"


@pytest.fixture
def ctx(tmp_path):
    exp = load_experiment(experiment(tmp_path, "unused", stages=[{"type": "best_of_n"}], model=POLICY))
    plan = prepare(exp)
    resolved = replace(plan.resolve(exp.stages[0], planning=True), run_dir=tmp_path / "run", run_id="r")
    return plan.context(resolved, Cache(tmp_path / "cache"))


def seq_model(tmp_path_factory, random_model, num_labels: int, **config):
    """A randomly initialised LlamaForSequenceClassification sharing the random model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(random_model)
    out = tmp_path_factory.mktemp(f"seq{num_labels}")
    torch.manual_seed(num_labels)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=tok.pad_token_id, num_labels=num_labels, **config)
    LlamaForSequenceClassification(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory, random_model):
    return seq_model(tmp_path_factory, random_model, 3,
                     id2label={0: "negative", 1: "neutral", 2: "positive"},
                     label2id={"negative": 0, "neutral": 1, "positive": 2})


@pytest.fixture(scope="module")
def pm_path(tmp_path_factory, random_model):
    return seq_model(tmp_path_factory, random_model, 1)


def logits_by_hand(path, text, special=True):
    """The model on one text alone: no batching, no padding, no dedup."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt", add_special_tokens=special)).logits[0]


COMPLETIONS = ["positive", "the meal was great and the service was slow", "negative", "positive"]


def test_classifier_is_the_probability_of_the_chosen_label(ctx, classifier_path, random_model):
    import torch

    exs = ctx.examples[:len(COMPLETIONS)]
    scorer = build_scorer({"type": "classifier", "model": str(classifier_path), "label": "Positive"}, ctx)
    got = scorer.score_batch(exs, COMPLETIONS)
    for score, text in zip(got, COMPLETIONS):  # lengths differ: the batch was padded
        assert score.value == pytest.approx(torch.softmax(logits_by_hand(classifier_path, text), -1)[2].item(), abs=1e-5)
    assert got[0].value == got[3].value and scorer.score(exs[0], "positive").value == pytest.approx(got[0].value)

    # With the prompt in front, by index.
    scorer = build_scorer({"type": "classifier", "model": str(classifier_path), "label": 0,
                           "template": "{prompt}\n{completion}"}, ctx)
    text = "\n\n".join(m.content for m in ctx.task.render(exs[1])) + "\n" + COMPLETIONS[1]
    want = torch.softmax(logits_by_hand(classifier_path, text), -1)[0].item()
    assert scorer.score(exs[1], COMPLETIONS[1]).value == pytest.approx(want, abs=1e-5)

    with pytest.raises(ConfigError, match="no label 'happy'") as err:
        build_scorer({"type": "classifier", "model": str(classifier_path), "label": "happy"}, ctx, field=FIELD)
    assert err.value.field == f"{FIELD}.label" and "2=positive" in err.value.fix
    with pytest.raises(ConfigError, match="no trained classification head"):  # a causal LM is not a classifier
        build_scorer({"type": "classifier", "model": str(random_model), "label": 0}, ctx)
    with pytest.raises(ConfigError, match=r"\{review\}, which is not a field"):
        build_scorer({"type": "classifier", "model": str(classifier_path), "label": 0, "template": "{review}"}, ctx)


def test_pm_is_the_probability_of_beating_the_reference(ctx, pm_path, classifier_path):
    import torch
    from transformers import AutoTokenizer

    exs = ctx.examples[:len(COMPLETIONS)]
    ref = "I'm sorry, I can't help with that."
    scorer = build_scorer({"type": "pm", "model": str(pm_path)}, ctx)
    assert scorer.needs_probabilities is False
    tok = AutoTokenizer.from_pretrained(pm_path)
    got = scorer.score_batch(exs, COMPLETIONS)
    for ex, text, score in zip(exs, COMPLETIONS, got):
        def chat(response):  # the PM's own chat template over the task prompt and the response
            messages = [m.to_dict() for m in [*ctx.task.render(ex), Message("assistant", response)]]
            return tok.apply_chat_template(messages, tokenize=False)

        s = logits_by_hand(pm_path, chat(text), special=False)[0]
        r = logits_by_hand(pm_path, chat(ref), special=False)[0]
        assert score.value == pytest.approx(torch.softmax(torch.stack([s, r]), 0)[0].item(), abs=1e-5)
        assert score.meta["reward"] == pytest.approx(s.item(), abs=1e-5)
        assert score.meta["reference_reward"] == pytest.approx(r.item(), abs=1e-5)

    # A plain template and another reference: plain text, ended by EOS as trl trains on plain text.
    scorer = build_scorer({"type": "pm", "model": str(pm_path), "reference": "negative",
                           "template": "{target}: {completion}"}, ctx)
    ex = exs[0]
    s = logits_by_hand(pm_path, f"{ex.target}: great{tok.eos_token}")[0]
    r = logits_by_hand(pm_path, f"{ex.target}: negative{tok.eos_token}")[0]
    assert scorer.score(ex, "great").value == pytest.approx(torch.sigmoid(s - r).item(), abs=1e-5)

    with pytest.raises(ConfigError, match="a preference model has one") as err:
        build_scorer({"type": "pm", "model": str(classifier_path)}, ctx, field=FIELD)
    assert err.value.field == f"{FIELD}.model"


def test_pm_without_a_chat_template_reads_the_transcript_it_was_trained_on(ctx, pm_path, tmp_path):
    """A PM trained without a chat template learned "Human: …\n\nAssistant: …" + EOS (what trl
    trains on): the scorer renders the task prompt and the response in exactly that format, with
    the instruction opening the Human turn, and the reward_model stage's record overrides a
    template the tokenizer happens to carry."""
    import shutil

    from ladder.scorers.pm import record_format

    plain = tmp_path / "pm_plain"
    shutil.copytree(pm_path, plain)
    record_format(plain, chat=False)  # trained with `chat_template: none` on a chat tokenizer
    scorer = build_scorer({"type": "pm", "model": str(plain)}, ctx)
    ex = ctx.examples[0]
    instruction, user = (m.content for m in ctx.task.render(ex))
    want = f"Human: {instruction}\n\n{user}\n\nAssistant: positive<|end|>"
    assert scorer.text(ex, "positive") == want
    s = logits_by_hand(plain, want)[0]  # BOS etc. added, as trl tokenizes plain text
    r = logits_by_hand(plain, want.replace("positive<", f"{scorer.config.reference}<"))[0]
    assert scorer.score(ex, "positive").value == pytest.approx(torch_sigmoid(s - r), abs=1e-5)


def torch_sigmoid(x):
    import torch

    return torch.sigmoid(x).item()


@pytest.mark.parametrize("text, scale, want", [
    ("Yes", "yes_no", 1.0), ("**No**, because", "yes_no", 0.0), ("Verdict: yes.", "yes_no", 1.0),
    ("It is not clear", "yes_no", None), ("Nobody knows", "yes_no", None), ("", "yes_no", None),
    ("8", "1-10", 8.0), ("Rating: 7/10", "1-10", 7.0), ("[[3]]", "1-10", 3.0), ("I give it 9 out of 10", "1-10", 9.0),
    ("On a 1-10 scale: 6", "1-10", 6.0), ("7.5", "1-10", 7.5), ("0", "1-10", None), ("eleven", "1-10", None),
])
def test_parse_verdict(text, scale, want):
    assert parse_verdict(text, scale) == want


def test_rubric_judge_scores_and_marks_failures(ctx):
    judge = {"type": "judge", "scale": "1-10", "template": "{completion}", "failure_score": -1.0,
             "model": {"backend": "tests.scorers.scripted:ScriptedBackend", "name": "rubric"}}
    scorer = build_scorer(judge, ctx)
    assert isinstance(scorer.backend, ScriptedBackend) and scorer.backend.config.name == "rubric"
    ex = ctx.examples[0]
    good, bad, ramble = scorer.score_batch([ex] * 3, ["positive", "negative", "neutral"])
    assert good.value == pytest.approx(8 / 9) and bad.value == pytest.approx(1 / 9)
    assert ramble.value == -1.0 and ramble.meta == {"verdict": "eleven out of ten", "parsed": False, "cost_usd": 0.0,
                                                     "prompt_tokens": 1, "completion_tokens": 2}
    assert good.meta["parsed"] is True and good.extracted == "9"


def test_any_metric_and_python_functions_are_scorers(ctx):
    ex = Example("x", {"text": "t"}, "positive", ("positive", "negative"))
    scorer = build_scorer({"type": "includes"}, ctx)
    assert [s.value for s in scorer.score_batch([ex, ex], ["so positive", "meh"])] == [1.0, 0.0]
    scorer = build_scorer({"type": "python", "function": "tests.scorers.test_scorers:length_reward"}, ctx)
    assert scorer.score(ex, "abcd") == Score(0.4)
    assert build_scorer("metric", ctx) is ctx.metric
    with pytest.raises(ConfigError) as err:
        build_scorer({"type": "python", "function": "tests.scorers.test_scorers:nope"}, ctx, field=FIELD)
    assert err.value.field == f"{FIELD}.function"  # not the metric's field


def length_reward(ex: Example, completion: str) -> float:
    return len(completion) / 10


def test_pm_rows_warn_about_a_pm_at_chance_and_one_the_policy_was_trained_against(ctx, pm_path, tmp_path):
    import json
    import shutil
    from types import SimpleNamespace

    from ladder.scorers.pm import pm_guards
    from ladder.stages.reward_model import accuracy_guard
    from ladder.types import MetricValue

    # A PM where the reward_model stage leaves one: <run>/model, with the stage's metrics.json beside it.
    run = tmp_path / "results" / "t" / "reward_model" / "abc"
    shutil.copytree(pm_path, run / "model")
    verdict = accuracy_guard(MetricValue(0.52, 0.41, 0.63, 60))
    (run / "metrics.json").write_text(json.dumps({"guards": [verdict.to_dict()]}))
    scorer = build_scorer({"type": "pm", "model": str(run / "model")}, ctx)
    (warn,) = pm_guards(scorer, ctx, "the selection", None)
    assert warn.name == "pm_beats_chance" and warn.level == "warn" and "0.520 [0.410, 0.630]" in warn.message

    # A PM that beats chance: no warning, until the policy scored is one RL-trained against it.
    (run / "metrics.json").write_text(json.dumps({"guards": [accuracy_guard(MetricValue(0.8, 0.7, 0.9, 60)).to_dict()]}))
    scorer = build_scorer({"type": "pm", "model": str(run / "model")}, ctx)
    assert pm_guards(scorer, ctx, "the selection", None) == []
    pm = {"type": "pm", "from_stage": "reward_model"}
    lineage = load_experiment(experiment(tmp_path, "unused", model=POLICY, stages=[
        {"type": "reward_model", "data": "pairs.jsonl"},
        {"type": "rl", "reward": pm},
        {"type": "sft", "model": {"from_stage": "rl"}},
        {"type": "best_of_n", "model": {"from_stage": "sft"}, "scorer": pm},
        {"type": "best_of_n", "name": "base_bon", "scorer": pm}]))
    made = SimpleNamespace(experiment=lineage, produced={"reward_model": {"reward_model": {"name": str(run / "model")}}})
    (trained,) = pm_guards(scorer, made, "the selection", "sft")  # sft on top of rl: still trained against it
    assert trained.name == "pm_trained_against" and "stage 'rl'" in trained.message
    assert "scored by the PM this policy was trained against" in trained.message
    assert pm_guards(scorer, made, "the selection", None) == []  # the base model never was


def test_pm_held_out_calibration_by_hand():
    import math

    from ladder.stages.reward_model import calibration, calibration_guard

    def rec(c, r):
        return {"chosen_reward": c, "rejected_reward": r, "score": 1.0 if c > r else 0.5 if c == r else 0.0}

    records = [rec(2.0, 0.0), rec(0.0, 2.0), rec(0.1, 0.0), rec(1.0, 1.0)]
    conf = [1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-0.1)), 0.5]
    c = calibration(records)
    assert c["mean_confidence"] == pytest.approx(sum(conf) / 4) and c["accuracy"] == pytest.approx(2.5 / 4)
    # Bins of width 0.1 on [0.5, 1]: {0.5, 0.525} in the first (accuracy 0.75), the two 0.881s in the fourth (0.5).
    first = (0.5 + conf[2]) / 2
    assert c["ece"] == pytest.approx(2 / 4 * abs(0.75 - first) + 2 / 4 * abs(0.5 - conf[0]))
    assert [b["n"] for b in c["bins"]] == [2, 2]
    g = calibration_guard(c)
    assert g.name == "pm_calibration" and g.level == "warn" and f"mean confidence is {sum(conf) / 4:.3f}" in g.message
    assert "right 0.625 of the time" in g.message
