"""Few-shot shot selection and packing: never over the context window, never a cut example."""

from __future__ import annotations

import random
from collections import Counter

from ladder.config import load_experiment
from ladder.runner import prepare
from ladder.stages.few_shot import FewShot, shot_order
from tests.conftest import experiment


def plan_and_ctx(tmp_path, model, stage, max_tokens=16, n_train=400):
    path = experiment(tmp_path, model, n_train=n_train, stages=[stage], generation={"max_tokens": max_tokens})
    exp = load_experiment(path)
    plan = prepare(exp)
    return plan, plan.context(plan.resolve(exp.stages[0], planning=True), cache=None)


def test_k_max_packs_whole_examples_up_to_the_window(tmp_path, random_model):
    plan, ctx = plan_and_ctx(tmp_path, random_model, {"type": "few_shot", "k": "max"})
    prompts, _ = FewShot(ctx.stage).prompts(ctx)
    budget = ctx.backend.context_window - ctx.gen.max_tokens
    train = {(f"Review: {e.fields['text']}", e.target) for e in plan.task.examples("train")}
    for p in prompts:
        k = p.info["shots"]
        assert k > 3
        assert ctx.backend.count_tokens(p.messages) <= budget  # never over the window
        turns = p.messages[1:-1]
        pairs = {(turns[i].content, turns[i + 1].content) for i in range(0, len(turns), 2)}
        assert len(turns) == 2 * k and pairs <= train  # every shot is a whole train example
        # ...and it is the most that fits: one more whole shot would overflow.
        order = shot_order(plan.task.examples("train"), random.Random(f"0:{p.example.id}"), True)
        assert ctx.backend.count_tokens(plan.task.render(p.example, order[:k + 1])) > budget


def test_fixed_k_is_trimmed_to_fit_with_a_warning(tmp_path, random_model):
    plan, ctx = plan_and_ctx(tmp_path, random_model, {"type": "few_shot", "k": 200}, max_tokens=200)
    prompts, guards = FewShot(ctx.stage).prompts(ctx)
    assert all(ctx.backend.count_tokens(p.messages) <= 56 for p in prompts)
    assert any(g.name == "context" and g.level == "warn" for g in guards)


def test_k_draws_are_seeded_balanced_and_per_example(tmp_path, random_model):
    plan, ctx = plan_and_ctx(tmp_path, random_model, {"type": "few_shot", "k": 6})
    a, _ = FewShot(ctx.stage).prompts(ctx)
    b, _ = FewShot(ctx.stage).prompts(ctx)
    assert [p.messages for p in a] == [p.messages for p in b]
    labels = Counter(m.content for m in a[0].messages[2:-1:2])
    assert sorted(labels.values()) == [2, 2, 2]  # balanced over the three labels
    assert a[0].messages[1:-1] != a[1].messages[1:-1]  # re-drawn per example


def test_gold_examples_from_yaml(tmp_path, random_model):
    shots = [{"text": "the meal was superb", "label": "positive"}, {"text": "so rude", "label": "negative"}]
    plan, ctx = plan_and_ctx(tmp_path, random_model, {"type": "few_shot", "examples": shots})
    prompts, _ = FewShot(ctx.stage).prompts(ctx)
    assert [m.content for m in prompts[0].messages[1:5]] == [
        "Review: the meal was superb", "positive", "Review: so rude", "negative"]
    assert all(p.info["shots"] == 2 for p in prompts)


def test_shot_order_round_robin():
    from ladder.types import Example

    pool = [Example(str(i), {}, "a" if i < 10 else "b", ("a", "b")) for i in range(12)]
    order = shot_order(pool, random.Random(0), balanced=True)
    assert [e.target for e in order[:4]].count("a") == 2 and len(order) == 12
