"""Few-shot shot selection and packing: never over the context window, never a cut example."""

from __future__ import annotations

import random
from collections import Counter

from ladder.config import load_experiment
from ladder.runner import prepare
from ladder.stages.few_shot import FewShot, ShotPool
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
        order = ShotPool(plan.task.examples("train"), True).order(random.Random(f"0:{p.example.id}"))
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


def test_round_robin_over_labels():
    from ladder.types import Example

    pool = [Example(str(i), {}, "a" if i < 10 else "b", ("a", "b")) for i in range(12)]
    order = ShotPool(pool, balanced=True).order(random.Random(0))
    assert [e.target for e in order[:4]].count("a") == 2 and len(order) == 12
    assert sorted(e.id for e in order) == sorted(e.id for e in pool)  # every example exactly once
    assert [e.target for e in order[4:]] == ["a"] * 8  # "b" is used up: "a" goes on alone


def old_shot_order(pool, rng, balanced):
    """The draw few_shot used before lazy drawing (a shuffle of the whole pool per test example),
    kept as the reference distribution."""
    from collections import defaultdict

    pool = list(pool)
    rng.shuffle(pool)
    if not balanced or not pool or pool[0].choices is None:
        return pool
    by_label = defaultdict(list)
    for ex in pool:
        by_label[ex.target].append(ex)
    labels = list(by_label)
    out = []
    while any(by_label.values()):
        for label in labels:
            if by_label[label]:
                out.append(by_label[label].pop())
    return out


def _frequencies(draw, pool, k, trials):
    """How often each example is among the first k, and how often each label sequence opens them."""
    inclusion, openings = Counter(), Counter()
    for t in range(trials):
        shots = draw(random.Random(f"7:{t}"))[:k]
        inclusion.update(e.id for e in shots)
        openings[tuple(e.target for e in shots[:3])] += 1
    return inclusion, openings


def test_lazy_draws_match_the_full_shuffle_in_distribution():
    """Inclusion frequency of every train example, and the law of the label order (which labels
    open the round-robin), agree with the old full-pool shuffle within sampling error. Unequal
    label sizes make the label order matter: drawing it uniformly would fail here."""
    from ladder.types import Example

    sizes = {"a": 4, "b": 10, "c": 26}
    pool = [Example(f"{label}{i}", {}, label, tuple(sizes)) for label, n in sizes.items() for i in range(n)]
    k, trials = 6, 6000
    for balanced in (True, False):
        new = _frequencies(lambda rng: ShotPool(pool, balanced).order(rng), pool, k, trials)
        old = _frequencies(lambda rng: old_shot_order(pool, rng, balanced), pool, k, trials)
        for got, want in zip(new, old):
            for key in set(got) | set(want):
                p = (got[key] + want[key]) / (2 * trials)  # pooled rate; the difference's sd below
                sd = (2 * p * (1 - p) / trials) ** 0.5
                assert abs(got[key] - want[key]) / trials <= 4.5 * sd + 1e-9, (balanced, key, got[key], want[key])
        if balanced:  # 2 of each label in 6 shots, every time
            shots = ShotPool(pool, True).order(random.Random(1))[:k]
            assert Counter(e.target for e in shots) == {"a": 2, "b": 2, "c": 2}


def test_a_draw_costs_random_numbers_for_the_shots_it_reads_not_the_pool():
    from ladder.types import Example

    pool = [Example(str(i), {}, "ab"[i % 2], ("a", "b")) for i in range(50_000)]
    counting = type("Counting", (random.Random,), {"calls": 0, "randrange": lambda self, n: (
        setattr(self, "calls", self.calls + 1), random.Random.randrange(self, n))[1]})
    rng = counting(0)
    order = ShotPool(pool, True).order(rng, exclude="3")
    shots = order[:8]
    assert len(shots) == 8 and rng.calls <= 8 + 2  # 8 shots + the label order, not 50,000
    assert len(order) == 49_999 and all(e.id != "3" for e in order[:2000])


def test_fixed_shots_are_one_seeded_set_and_a_shared_prefix(tmp_path, random_model):
    plan, ctx = plan_and_ctx(tmp_path, random_model, {"type": "few_shot", "k": "max", "shots": "fixed"})
    prompts, _ = FewShot(ctx.stage).prompts(ctx)
    budget = ctx.backend.context_window - ctx.gen.max_tokens
    k = prompts[0].info["shots"]
    assert k > 3 and all(p.info["shots"] == k for p in prompts)  # one k for every example
    prefix = prompts[0].messages[:-1]  # instruction + k shots
    assert all(p.messages[:-1] == prefix for p in prompts)  # ...and the very same shots, in order
    assert all(ctx.backend.count_tokens(p.messages) <= budget for p in prompts)
    assert prefix[-1].cache and not any(m.cache for m in prefix[:-1] + [prompts[0].messages[-1]])
    again, _ = FewShot(ctx.stage).prompts(ctx)
    assert [p.messages for p in again] == [p.messages for p in prompts]  # seeded
    # Per-example draws differ between examples and carry no cache breakpoint.
    _, ctx2 = plan_and_ctx(tmp_path / "b", random_model, {"type": "few_shot", "k": 6})
    per, _ = FewShot(ctx2.stage).prompts(ctx2)
    assert per[0].messages[:-1] != per[1].messages[:-1] and not any(m.cache for p in per for m in p.messages)


def test_resample_false_still_means_fixed_shots():
    from ladder.stages.few_shot import FewShotConfig

    assert FewShotConfig(k=4, resample=False).shots == "fixed"
    assert FewShotConfig(k=4, resample=True).shots == "per_example"
    try:
        FewShotConfig(k=4, resample=True, shots="fixed")
    except ValueError as e:
        assert "contradicts" in str(e)
    else:
        raise AssertionError("resample: true with shots: fixed was accepted")


def test_k_larger_than_the_train_split_warns(tmp_path, random_model):
    """k: 50 with 3 train rows used to give 3 shots without a word."""
    plan, ctx = plan_and_ctx(tmp_path, random_model, {"type": "few_shot", "k": 50}, n_train=3)
    prompts, guards = FewShot(ctx.stage).prompts(ctx)
    assert max(p.info["shots"] for p in prompts) == 3
    (warn,) = [g for g in guards if g.name == "shots" and g.level == "warn"]
    assert "k=50, but the train split has only 3 shots to give" in warn.message and warn.value == 3
    plan, ctx = plan_and_ctx(tmp_path, random_model, {"type": "few_shot", "k": 2}, n_train=3)
    assert not [g for g in FewShot(ctx.stage).prompts(ctx)[1] if g.level == "warn"]
