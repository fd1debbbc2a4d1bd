"""few_shot: gold examples before the question, as earlier user/assistant turns.

Three ways to get the shots:
  examples: [...]   1-10 written by hand in the YAML (the same for every test example);
  k: 8              drawn from the train split, seeded, balanced over labels when there are choices;
  k: max            as many train examples as fit in the context window, leaving room for the
                    answer. Whole examples are dropped, never cut in half.
Shots are re-drawn per test example (seeded by its id), so one unlucky draw does not decide the
whole stage. `shots: fixed` draws one seeded set for every example instead: all prompts then start
with the same instruction + shots, which provider prompt caches bill at a tenth to a half of the
input price (OpenAI caches such prefixes by itself; for Anthropic the last shot carries a cache
breakpoint). Any k is trimmed to fit the context, with a warning; with fixed shots one k for all.

Drawing is lazy: a prompt with k shots costs O(k) random numbers, not a shuffle of the train split
(SST-2's 67k rows × 300 examples was 20M calls), with the distribution of that shuffle (see
`ShotPool`).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from typing import Any, Literal, Sequence

from pydantic import Field, field_validator, model_validator

from ladder.config import FromStageOutputs, StageConfig
from ladder.config.schema import older_name
from ladder.stages import Prompt, Stage, StageContext
from ladder.types import Example, Guard, Message


def _resample_to_shots(resample: Any) -> str:
    if not isinstance(resample, bool):
        raise ValueError("resample must be true or false (better: shots: per_example or fixed)")
    return "per_example" if resample else "fixed"


class FewShotConfig(StageConfig):
    type: Literal["few_shot"] = "few_shot"
    k: int | Literal["max"] | None = None
    """Shots drawn from the train split, or 'max' to fill the context window. Not with `examples`."""
    examples: list[dict[str, Any]] | None = Field(None, min_length=1, max_length=10)
    """1-10 gold shots written here, each a mapping with the template's fields and the target."""
    balanced: bool = True
    """With choices: cycle through labels so each label is shown about equally often."""
    shots: Literal["per_example", "fixed"] = "per_example"
    """per_example: fresh shots for each test example (seeded by its id). fixed: one seeded set,
    and one k, for every example, so all prompts share their prefix (instruction + shots) and
    provider prompt caches bill it at the cached-input price."""
    seed: int | None = None
    """Seed of the shot draw; defaults to the experiment seed."""
    answer_field: str | None = None
    """On an open-ended task (no task.target): the column (or, for `examples:`, the key) holding
    each shot's answer — the assistant turn the shot shows. `examples:` default to the key `answer`."""
    shots_from: FromStageOutputs | None = None
    """Draw the k shots from an earlier stage's outputs that scored at least min_score, instead of
    the train split: {stage: zero_shot, min_score: 1} — "stochastic few-shot" (docs/redteam.md)."""

    @model_validator(mode="before")
    @classmethod
    def _resample_is_shots(cls, data: Any) -> Any:
        # `resample: false` was the older spelling of `shots: fixed`; configs that use it still work.
        return older_name(data, "resample", "shots", _resample_to_shots)

    @field_validator("k")
    @classmethod
    def _k_positive(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and not 1 <= v <= 10_000:
            raise ValueError("k must be between 1 and 10,000 (or 'max')")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> FewShotConfig:
        if self.shots_from is not None and (self.k is None or self.examples is not None):
            raise ValueError("few_shot with `shots_from` needs `k` (how many of that stage's successes to "
                             "show) and no `examples`")
        if (self.k is None) == (self.examples is None):
            raise ValueError("few_shot needs exactly one of `k` (drawn from the train split, or "
                             "'max') or `examples` (1-10 written in the YAML)")
        return self


class FewShot(Stage):
    Config = FewShotConfig
    produces_model = False  # nothing for a later stage's `from_stage`
    advice_if_worse = ("check the shot formatting (do the shots' answers look like the answer you want?) and the "
                       "label balance of the shots; read a few prompts in samples.jsonl.")

    @classmethod
    def reads(cls, cfg: FewShotConfig) -> list[str]:
        # YAML shots are in the config itself; an earlier stage's outputs enter the run id by its run id.
        return [] if cfg.k is None or cfg.shots_from is not None else [cls.TRAIN_SPLIT]

    @staticmethod
    def check_inputs(cfg: FewShotConfig, task) -> None:
        """Called by the runner before anything is written: the shots' source must be usable."""
        if cfg.shots_from is not None:  # an earlier stage's outputs: read once it has run
            return
        if cfg.examples is not None:
            shots = [task.make_example(row, f"shot-{i}", field=f"stage {cfg.name} examples[{i}]")
                     for i, row in enumerate(cfg.examples)]
        else:
            shots = task.examples("train")
        if getattr(task, "open_ended", False):
            with_answers(shots, cfg)  # the error, now, when a shot has no answer to show

    def prompts(self, ctx: StageContext) -> tuple[list[Prompt], list[Guard]]:
        cfg: FewShotConfig = self.config
        seed = ctx.experiment.seed_for(cfg.seed)
        open_ended = getattr(ctx.task, "open_ended", False)
        fixed = cfg.examples is not None or cfg.shots == "fixed"  # the same shots for every example
        if cfg.examples is not None:
            yaml_shots = [ctx.task.make_example(row, f"shot-{i}", field=f"stage {cfg.name} examples[{i}]")
                          for i, row in enumerate(cfg.examples)]
            if open_ended:
                yaml_shots = with_answers(yaml_shots, cfg)
        elif cfg.shots_from is not None:
            pool = ShotPool(earlier_shots(ctx, cfg), balanced=False)  # outputs, not labels: nothing to balance
        else:
            train = ctx.task.examples("train")
            pool = ShotPool(with_answers(train, cfg) if open_ended else train, cfg.balanced)

        def order(ex: Example) -> Sequence[Example]:
            if cfg.examples is not None:
                return yaml_shots
            # A train example is never its own shot. With fixed shots every example draws from the
            # same seed, so all orders are equal but for skipping the example itself.
            return pool.order(random.Random(seed if cfg.shots == "fixed" else f"{seed}:{ex.id}"), exclude=ex.id)

        budget = _budget(ctx)
        orders = [order(ex) for ex in ctx.examples]
        wants = [len(o) if cfg.k in ("max", None) else min(cfg.k, len(o)) for o in orders]

        def fit_to(ex: Example, o: Sequence[Example], want: int) -> int:
            # The lazy order itself when all of it may be used (k: max): fit draws only what it reads.
            return fit(ctx, ex, o if want >= len(o) else o[:want], budget)

        if cfg.shots == "fixed" and budget:
            # One k for all: the largest that fits every example (k only falls while scanning).
            common: int | None = None
            for ex, o, want in zip(ctx.examples, orders, wants):
                if common is None:
                    common = fit_to(ex, o, want)
                elif common > want or ctx.backend.count_tokens(ctx.task.render(ex, o[:common])) > budget:
                    common = fit(ctx, ex, o[:min(common, want)], budget)
            ks = [common or 0] * len(orders)
        else:
            ks = [fit_to(ex, o, want) if budget else want for ex, o, want in zip(ctx.examples, orders, wants)]
        prompts, trimmed = [], 0
        for ex, o, want, k in zip(ctx.examples, orders, wants, ks):
            trimmed += cfg.k not in ("max", None) and k < want
            messages = ctx.task.render(ex, o[:k])
            if fixed and k:
                messages = mark_shared_prefix(messages)
            prompts.append(Prompt(ex, messages, {"shots": k}))
        guards = _guards(prompts, trimmed, cfg)
        if cfg.shots_from is not None and not ctx.earlier:
            guards.append(Guard("shots", "info", f"the shots come from stage '{cfg.shots_from.stage}''s outputs once it "
                                f"has run: counted here without them", 0.0))
        short = [len(o) for o in orders if isinstance(cfg.k, int) and len(o) < cfg.k]
        if short:  # k: 50 with 3 train rows would silently be k: 3
            source = "the stage's `examples:`" if cfg.examples is not None else "the train split"
            guards.append(Guard("shots", "warn", f"k={cfg.k}, but {source} has only {max(short)} shots to give "
                                f"(an example is never its own shot): {len(short)} prompts got at most "
                                f"{max(short)}; lower k or add examples", float(max(short))))
        return prompts, guards


def earlier_shots(ctx: StageContext, cfg: FewShotConfig) -> list[Example]:
    """`shots_from`: the test examples on which the earlier stage's output scored at least
    min_score, each with that output as its answer. None under `ladder check` (not run yet)."""
    from ladder.earlier import none_left, successes

    folder = ctx.earlier.get(cfg.shots_from.stage)
    if folder is None:
        return []
    by_id = {ex.id: ex for ex in ctx.examples}
    shots = [replace(by_id[r["id"]], target=r["output"]) for r in successes(folder, cfg.shots_from.min_score)
             if r["id"] in by_id]
    if not shots:
        raise none_left(cfg.name, "shots_from", cfg.shots_from)
    return shots


def with_answers(shots: Sequence[Example], cfg: FewShotConfig) -> list[Example]:
    """An open-ended task's shots with their answers (the assistant turn each shows) taken from
    `answer_field` — a train column, or a key of the YAML `examples:` (default `answer`)."""
    from ladder.errors import ConfigError

    field = cfg.answer_field or ("answer" if cfg.examples is not None else None)
    if field is None:
        raise ConfigError("the task is open-ended (no task.target), so the train split has no answers for "
                          "few_shot to show after its shots", field=f"stages.{cfg.name}.answer_field",
                          fix="name the column holding a good reply with answer_field: <column>, or write 1-10 "
                              "shots under examples: with an `answer:` key each")
    out = []
    for i, shot in enumerate(shots):
        answer = shot.fields.get(field)
        if answer is None:
            where = f"examples[{i}]" if cfg.examples is not None else f"train example {shot.id}"
            raise ConfigError(f"{where} has no '{field}' to show as its answer (the task is open-ended)",
                              field=f"stages.{cfg.name}.{'examples' if cfg.examples is not None else 'answer_field'}",
                              fix=f"give every shot a '{field}'" + ("" if cfg.answer_field else
                                                                     ", or name another key with answer_field"))
        out.append(replace(shot, target=str(answer), fields={k: v for k, v in shot.fields.items() if k != field}))
    return out


def mark_shared_prefix(messages: list[Message]) -> list[Message]:
    """The last message before the example (the last shot's answer) marked as the end of a prefix
    that many prompts share: where Anthropic puts its cache breakpoint (`Message.cache`)."""
    out = list(messages)
    out[-2] = replace(out[-2], cache=True)
    return out


class ShotPool:
    """The train split, indexed once per stage, from which each test example draws its shots.

    `order(rng)` has the distribution of the old full-pool draw — `rng.shuffle(pool)`, then
    (balanced, with choices) a round-robin over the labels in the order they first appear, each
    label's examples in shuffled order — but is drawn lazily, so `order[:k]` costs O(k) random
    numbers. Equal in distribution, not draw for draw (a full shuffle needs one random number per
    train example): the labels' order is drawn one label at a time with probability proportional
    to how many examples remain of each (the law of first appearances in a shuffle), and each
    label's examples by a partial Fisher-Yates shuffle. tests/stages/test_few_shot.py compares both."""

    def __init__(self, pool: Sequence[Example], balanced: bool):
        self.examples = list(pool)
        self.balanced = balanced and any(ex.choices is not None for ex in self.examples)
        groups: dict[str, list[int]] = defaultdict(list)
        ids: dict[str, list[int]] = defaultdict(list)
        for i, ex in enumerate(self.examples):
            groups[ex.target if self.balanced else ""].append(i)
            ids[ex.id].append(i)
        self.groups = dict(groups)
        self.ids = dict(ids)

    def order(self, rng: random.Random, exclude: str | None = None) -> LazyOrder:
        skip = frozenset(self.ids.get(exclude, ())) if exclude is not None else frozenset()
        return LazyOrder(self, rng, skip)


class LazyOrder(Sequence[Example]):
    """A seeded random order of a ShotPool, drawn as far as it is read."""

    def __init__(self, pool: ShotPool, rng: random.Random, skip: frozenset[int]):
        self.pool, self.rng = pool, rng
        sizes = {label: len(idx) - sum(i in skip for i in idx) if skip else len(idx)
                 for label, idx in pool.groups.items()}
        self.size = sum(sizes.values())
        # Labels in a random order of first appearance: each next one with probability proportional
        # to its remaining examples (a pool of one label, or unbalanced, needs no draw).
        labels, left = [], {k: v for k, v in sizes.items() if v}
        while left:
            if len(left) == 1:
                labels.append(next(iter(left)))
                break
            r = rng.randrange(sum(left.values()))
            for label, size in left.items():
                if r < size:
                    break
                r -= size
            labels.append(label)
            del left[label]
        self.streams = [_Stream(pool.groups[label], skip) for label in labels]
        self.drawn: list[Example] = []
        self.turn = 0  # index into the streams still holding examples, for the round-robin

    def __len__(self) -> int:
        return self.size

    def _extend(self, n: int) -> None:
        n = min(n, self.size)
        while len(self.drawn) < n:
            if self.turn >= len(self.streams):
                self.turn = 0
            i = self.streams[self.turn].next(self.rng)
            if i is None:  # that label is used up: the round-robin goes on without it
                del self.streams[self.turn]
                continue
            self.drawn.append(self.pool.examples[i])
            self.turn += 1

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, slice):
            wanted = range(*key.indices(self.size))
            if wanted:
                self._extend(max(wanted) + 1)
            return [self.drawn[i] for i in wanted]
        index = key if key >= 0 else self.size + key
        if not 0 <= index < self.size:
            raise IndexError(key)
        self._extend(index + 1)
        return self.drawn[index]


class _Stream:
    """A partial Fisher-Yates shuffle of one label's indices: each `next` is O(1), and swapped
    positions live in a dict, so nothing is copied."""

    def __init__(self, items: list[int], skip: frozenset[int]):
        self.items, self.skip, self.i, self.swaps = items, skip, 0, {}

    def next(self, rng: random.Random) -> int | None:
        n = len(self.items)
        while self.i < n:
            i = self.i
            j = i + rng.randrange(n - i)
            got = self.swaps.get(j, j)
            self.swaps[j] = self.swaps.get(i, i)
            self.i += 1
            item = self.items[got]
            if item not in self.skip:  # dropping one element from a uniform order leaves a uniform order
                return item
        return None


def _budget(ctx: StageContext) -> int | None:
    """Prompt tokens allowed: the context window minus room for the answer."""
    window = ctx.backend.context_window
    return None if window is None else window - ctx.gen.max_tokens


def fit(ctx: StageContext, ex: Example, shots: Sequence[Example], budget: int) -> int:
    """The largest k such that the prompt with shots[:k] fits the budget (whole shots only).

    Prompt length grows with k. Rendering a whole train split to test it would cost seconds per
    example, so start from an estimate (mean tokens of the first few shots), gallop to bracket
    the answer, then binary-search on real token counts of the rendered prompt."""
    def fits(k: int) -> bool:
        return ctx.backend.count_tokens(ctx.task.render(ex, shots[:k])) <= budget

    n = len(shots)
    if n == 0:
        return 0
    base = ctx.backend.count_tokens(ctx.task.render(ex))
    m = min(n, 8)
    per_shot = max(1.0, (ctx.backend.count_tokens(ctx.task.render(ex, shots[:m])) - base) / m)
    k = int(min(n, max(0, (budget - base) // per_shot)))
    step = max(1, k // 8)
    # Bracket: fits(lo) holds (lo = 0 is taken as the floor) and fits(hi) does not.
    if fits(k):
        lo = k
        while True:
            nxt = min(n, lo + step)
            if nxt == lo:
                return n
            if not fits(nxt):
                hi = nxt
                break
            lo, step = nxt, step * 2
    else:
        hi = k
        while True:
            nxt = max(0, hi - step)
            if nxt == 0 or fits(nxt):
                lo = nxt
                break
            hi, step = nxt, step * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _guards(prompts: list[Prompt], trimmed: int, cfg: FewShotConfig) -> list[Guard]:
    shots = [p.info["shots"] for p in prompts]
    mean = sum(shots) / len(shots) if shots else 0.0
    out = [Guard("shots", "info", f"{mean:.1f} shots per prompt on average (min {min(shots, default=0)}, "
                 f"max {max(shots, default=0)})", mean)]
    if trimmed:
        out.append(Guard("context", "warn", f"k={cfg.k} shots did not fit the context window for "
                         f"{trimmed} examples; whole shots were dropped to fit", float(trimmed)))
    if shots and min(shots) == 0:
        out.append(Guard("context", "warn", "some prompts got no shots at all: the context window "
                         "is too small for even one example plus the answer", 0.0))
    return out
