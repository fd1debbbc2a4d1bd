"""What to try next: short rule-based suggestions drawn from the numbers on disk.

The rules read guards, stats and metrics in metrics.json, paired differences (ladder/evidence.py)
and climb.json. Each rule is a small named function `rule(ev) -> list[Step]` in RULES; the first
line of its docstring says when it fires. Rules know stages by what the stage class declares
(`Stage.family`, `produces_model`, `trains_on_reward`, `advice_if_worse`), never by type name, so
a plugin stage gets advice too. Other stages feed the rules through names they already write:
guards `stop_hit`, `context`, `errors`, a chance-loss guard named in CHANCE_GUARDS (sft).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from ladder.evidence import DAMAGED, Evidence, describe, stage_class
from ladder.stats import num
from ladder.types import Guard, StageResult

CHANCE_GUARDS = ("chance_loss",)
"""Guard names (level warn) that mean: SFT's test loss is not clearly below chance, −log(1/K), or not
below the label distribution's entropy (what learning only the labels' shares reaches)."""
WELL_ABOVE = 0.05
"""A gain this large (with its CI above 0) is worth acting on."""


@dataclass(frozen=True)
class Step:
    rule: str
    text: str


Rule = Callable[[Evidence], list[Step]]


def _guards(ev: Evidence, names: tuple[str, ...], levels: tuple[str, ...] = ("warn",)) -> list[tuple[StageResult, Guard]]:
    return [(r, g) for r in ev.results for g in r.guards if g.name in names and g.level in levels]


def _stages(pairs: list[tuple[StageResult, Guard]]) -> str:
    return ", ".join(dict.fromkeys(r.stage for r, _ in pairs))


def retry_errors(ev: Evidence) -> list[Step]:
    """Some examples failed after all retries."""
    failed = [(r.stage, r.stats.errors) for r in ev.results if r.stats.errors]
    if not failed:
        return []
    which = ", ".join(f"{s} ({n})" for s, n in failed)
    return [Step("retry_errors", f"{which}: examples failed after all retries and are not counted. "
                                 f"Re-run the same command: only the failed examples are retried.")]


def damaged_samples(ev: Evidence) -> list[Step]:
    """A finished stage's samples.jsonl no longer holds what its metrics.json summarised."""
    hit = _guards(ev, (DAMAGED,))
    if not hit:
        return []
    return [Step("damaged_samples", f"{_stages(hit)}: samples.jsonl no longer matches metrics.json "
                                    f"(truncated or edited), so the row's n and its paired differences "
                                    f"disagree — run the same command again: the stage is re-scored from "
                                    f"the model-call cache.")]


def stop_hits_low(ev: Evidence) -> list[Step]:
    """Samples ran into max_tokens instead of ending on a stop sequence or EOS."""
    steps = []
    warned = _guards(ev, ("stop_hit",))
    if warned:
        rate = min(g.value for _, g in warned if g.value is not None)
        steps.append(Step("stop_hits_low", f"{_stages(warned)}: as few as {rate:.0%} of samples ended on a "
                          f"stop sequence — fix the `stop:` strings to match what the model writes, or "
                          f"lower max_tokens; the rest are tokens nobody reads."))
    cut = _guards(ev, ("stop_hit",), ("info",))
    if cut:
        rate = min(g.value for _, g in cut if g.value is not None)
        steps.append(Step("stop_hits_low", f"{_stages(cut)}: only {rate:.0%} of samples ended before "
                          f"max_tokens — raise max_tokens if answers are cut off, or add a `stop:` "
                          f"sequence where the answer ends."))
    return steps


def evaluate_more(ev: Evidence) -> list[Step]:
    """Fewer examples than guards.min_n (300): too few for clean trends."""
    small = [r for r in ev.results if 0 < r.metric.n < ev.min_n and _on_test_subsample(r)]
    if not small:
        return []
    n = min(r.metric.n for r in small)
    widest = max(r.metric.ci_high - r.metric.ci_low for r in small)
    return [Step("evaluate_more", f"only {n} examples evaluated (95% CIs up to {widest:.2f} wide): "
                                  f"evaluate at least {ev.min_n} (subsample.n) before trusting "
                                  f"differences between rungs.")]


def _on_test_subsample(r: StageResult) -> bool:
    """Whether the stage's n counts test examples (reward_model's counts its held-out pairs)."""
    cls = stage_class(r.type)
    return True if cls is None else cls.evaluates_test_subsample  # a plugin gone: assume the usual


def context_trimmed(ev: Evidence) -> list[Step]:
    """Few-shot prompts had to drop shots to fit the context window."""
    hit = _guards(ev, ("context",))
    if not hit:
        return []
    return [Step("context_trimmed", f"{_stages(hit)}: shots were dropped to fit the context window — "
                                    f"lower k, shorten the instruction, or use a longer-context model.")]


def few_shot_worse(ev: Evidence) -> list[Step]:
    """A prompting stage (e.g. few_shot) scores significantly below the reference prompting stage
    (zero_shot; paired CI below 0). The advice is the stage's own `advice_if_worse`."""
    ref = ev.reference
    if ref is None:
        return []
    return [Step("few_shot_worse", f"{r.stage} is worse than {ref.stage} ({describe(d)}): "
                                   f"{ev.stage_class(r).advice_if_worse}")
            for r in _others(ev, ref) if ev.family(r) == "prompting" and (d := ev.diff(r, ref)).ci_high < 0]


def _others(ev: Evidence, ref: StageResult) -> list[StageResult]:
    """The rows that are not more of the reference's own kind (a second zero_shot is the same rung)."""
    return [r for r in ev.results if r.type != ref.type]


def loss_above_chance(ev: Evidence) -> list[Step]:
    """An sft stage's test loss is not clearly below chance level −log(1/K), or not below the label
    distribution's entropy (a chance-loss guard warns)."""
    hit = _guards(ev, CHANCE_GUARDS)
    if not hit:
        return []
    return [Step("loss_above_chance", f"{_stages(hit)}: the test loss did not get clearly below chance level "
                                      f"or the label distribution's entropy (what a model that learned only "
                                      f"how often each label occurs reaches) — check the train split's label "
                                      f"balance, raise the learning rate or train more epochs (look at the loss "
                                      f"curve in `ladder report`: flat means too low a rate, rising "
                                      f"means too high).")]


def no_better_than_majority(ev: Evidence) -> list[Step]:
    """A K-way stage does no better than always answering the majority class, or gives one answer to
    every example (a `no_better_than_majority` guard warns)."""
    hit = _guards(ev, ("no_better_than_majority",))
    if not hit:
        return []
    majority = max(g.value for _, g in hit if g.value is not None)
    return [Step("no_better_than_majority", f"{_stages(hit)}: no better than always answering the majority "
                 f"class ({majority:.3f}) — a gain over a rung that sat below it is not learning. Read the "
                 f"answers (`ladder atlas`): one answer to everything means a collapsed model (for a trained "
                 f"stage check the train split's label balance, the learning rate and the epochs; for a "
                 f"prompt, the instruction and the shots' labels).")]


def unread_answers(ev: Evidence) -> list[Step]:
    """A K-way stage sits below chance, or many of its answers are none of the choices: the guard's
    own diagnosis (wrong answers, or answers that were not read) and the fix that fits the stage."""
    below = _guards(ev, ("below_chance",))
    said = {r.stage for r, _ in below}
    unparsed = [(r, g) for r, g in _guards(ev, ("unparsed",)) if r.stage not in said]  # below_chance says it
    return [Step(g.name, f"{r.stage}: {g.message}.") for r, g in [*below, *unparsed]]


HANDLED = {DAMAGED, "stop_hit", "context", *CHANCE_GUARDS, "no_better_than_majority", "below_chance", "unparsed",
           "errors"}
"""Warning guards a rule above reacts to; every other warning is passed on by `other_warnings`."""


def other_warnings(ev: Evidence) -> list[Step]:
    """Any warning guard no other rule reacts to: its own message, once, naming its stages — a
    table with warnings never ends in "nothing flagged"."""
    seen: dict[tuple[str, str], list[str]] = {}
    for r in ev.results:
        for g in r.guards:
            small = g.name == "subsample" and g.value is not None and g.value < ev.min_n  # evaluate_more's
            if g.level == "warn" and g.name not in HANDLED and not small:
                seen.setdefault((g.name, g.message), []).append(r.stage)
    return [Step(name, f"{', '.join(dict.fromkeys(stages))}: {message}.") for (name, message), stages in seen.items()]


def _best(found: list[StageResult]) -> StageResult | None:
    return max(found, key=lambda r: r.metric.value) if found else None


def _supervised(ev: Evidence) -> list[StageResult]:
    """Training stages that give a model by imitation (sft): where a selection is distilled."""
    return [r for r in ev.of_family("training")
            if (cls := ev.stage_class(r)).produces_model and not cls.trains_on_reward]


def _rewarded(ev: Evidence) -> list[StageResult]:
    """Training stages that optimise a reward (rl): best-of-N with that reward is their yardstick."""
    return [r for r in ev.of_family("training") if ev.stage_class(r).trains_on_reward]


def distil_best_of_n(ev: Evidence) -> list[Step]:
    """A sampling stage (best_of_n) beats the best greedy prompting rung clearly, and no supervised
    training stage (sft) has caught up."""
    ref = _best(ev.of_family("prompting"))
    sft = _best(_supervised(ev))
    if ref is None:
        return []
    return [Step("distil_best_of_n", (
        f"{bon.stage} beats {ref.stage} ({describe(d)}), but it is an oracle — its selector reads the test "
        f"answers — so the gap is an upper bound on what selection can buy, not a result. A deployable "
        f"selector (pm, judge, classifier) shows how much is real; an sft stage trained on its export "
        f"(drawn from train, where reading answers is fair) is the way to keep it.") if bon.oracle else (
        f"{bon.stage} beats {ref.stage} ({describe(d)}): distil it — an sft stage "
        f"trained on {bon.stage}'s best samples (its export) can give that quality "
        f"at the cost of one greedy sample."))
            for bon in ev.of_family("sampling")
            if (d := ev.diff(bon, ref)).ci_low > 0 and d.value >= WELL_ABOVE
            and (sft is None or sft.metric.value < bon.metric.value)]


def rl_below_best_of_n(ev: Evidence) -> list[Step]:
    """A reward-trained stage (rl) scores significantly below best-of-N: its own (same reward, same
    examples), else a sampling stage's."""
    out = []
    for rl in _rewarded(ev):
        own = rl.extra.best_of_n or {}
        if own.get("diff"):
            d = own["diff"]
            if d["ci_high"] is None or d["ci_high"] >= 0:  # None: no interval (metrics.json has no NaN)
                continue
            said = f"{num(d['value'], True)} [{num(d['ci_low'], True)}, {num(d['ci_high'], True)}]"
            if own.get("oracle"):
                out.append(Step("rl_below_best_of_n", f"{rl.stage} is below best-of-{own['n']} ({said}), but that "
                                f"best-of-N selects with the task metric on the test answers (an upper bound "
                                f"RL cannot reach without seeing them): train longer, or compare with a "
                                f"deployable selector (pm, judge, classifier)."))
            else:
                out.append(Step("rl_below_best_of_n", f"{rl.stage} is below best-of-{own['n']} with the same "
                                f"reward ({said}): check the learning rate and KL coefficient (see the reward "
                                f"and KL curves), or keep best-of-N — it needs no training."))
            continue
        best = _best(ev.of_family("sampling"))
        if best is not None and (d := ev.diff(rl, best)).ci_high < 0:
            if best.oracle:
                out.append(Step("rl_below_best_of_n", f"{rl.stage} is below {best.stage} ({describe(d)}), but "
                                f"{best.stage} is an oracle (its selector reads the test answers): an upper "
                                f"bound, not a fair target; compare with a deployable selector (pm, judge, "
                                f"classifier)."))
                continue
            out.append(Step("rl_below_best_of_n", f"{rl.stage} is below {best.stage} ({describe(d)}): check the "
                            f"reward (do best-of-N's top samples really look best?) and the learning rate / KL "
                            f"coefficient (see the reward and KL curves)."))
    return out


def best_of_n_before_rl(ev: Evidence) -> list[Step]:
    """A reward-trained stage (rl) ran with no best-of-N beside it (its own was turned off, and no
    sampling stage)."""
    if ev.of_family("sampling"):
        return []
    if any(not rl.extra.best_of_n for rl in _rewarded(ev)):
        return [Step("best_of_n_before_rl", "rl ran without best_of_n: run best_of_n with the same reward "
                                            "— it shows what high-reward samples look like and exposes "
                                            "a broken reward for free.")]
    return []


def no_rung_helps(ev: Evidence) -> list[Step]:
    """Two or more rungs ran and none is significantly above the reference prompting rung (zero_shot)."""
    ref = ev.reference
    # An oracle above zero_shot shows the answers are in the samples, not that a rung helps.
    others = [r for r in _others(ev, ref) if not r.oracle] if ref is not None else []
    if not others:
        return []
    if any(ev.diff(r, ref).ci_low > 0 for r in others):
        return []
    return [Step("no_rung_helps", f"no rung is clearly above {ref.stage} yet: look at the samples "
                                  f"(`ladder atlas`) — the prompt or the metric may be the problem — "
                                  f"before paying for the next rung.")]


def target_not_reached(ev: Evidence) -> list[Step]:
    """`ladder climb` ran every selected rung without reaching its target."""
    c = ev.climb
    if not c or c.get("reached") or not c.get("exhausted"):
        return []
    climbed = {r["stage"] for r in c.get("rungs", [])}
    if any(r.stage not in climbed for r in ev.results):  # a later `ladder run` added rungs
        return []
    bounds = c.get("upper_bounds") or []
    only_oracle = f" ({', '.join(bounds)} reached it only as an oracle, an upper bound)" if bounds else ""
    return [Step("target_not_reached", f"no rung reached the target ({c['by']} ≥ {c['target']}){only_oracle}: add "
                                       f"the next rung of the ladder, or ask whether the target is "
                                       f"realistic for this model.")]


def underpowered(ev: Evidence) -> list[Step]:
    """A rung's paired difference from the row above has a CI straddling 0: says the smallest
    difference this n could detect (80% power) and the n needed to detect the one observed."""
    from ladder.power import diff_mde, n_needed, sd_of

    said = []
    for prev, r in zip(ev.results, ev.results[1:]):
        d = ev.diff(r, prev)
        if d.n < 2 or math.isnan(d.ci_low) or not d.ci_low <= 0 <= d.ci_high or not sd_of(d) > 0:
            continue
        line = f"{r.stage} − {prev.stage} is {describe(d)}, and n={d.n} detects only ±{num(diff_mde(d))}"
        if abs(d.value) >= MIN_EFFECT:
            line += f"; to detect {num(d.value, True)} you need n ≈ {n_needed(sd_of(d), d.value):,}"
        said.append(line)
    if not said:
        return []
    return [Step("underpowered", "; ".join(said) + " (80% power, two-sided α = 0.05, the sd of the observed "
                                 "per-example differences): evaluate more examples (subsample.n) before "
                                 "calling these rungs equal.")]


def selected_by_metric(ev: Evidence) -> list[Step]:
    """A row was picked or trained by the very scorer that scores it: its number is optimistic."""
    out = []
    for r in ev.results:
        if not r.selected_by_metric:
            continue
        m = r.metric
        held = r.extra.metrics or {}
        if held:  # the held-out metrics beside the selecting one, side by side
            side = "; ".join(f"held-out {k} {num(v.value)}" + (f" [{num(v.ci_low)}, {num(v.ci_high)}]"
                                                               if not math.isnan(v.ci_low) else "")
                             for k, v in held.items() if not math.isnan(v.value))
            out.append(Step("selected_by_metric", f"{r.stage} was selected by its own metric: {r.metric_name} "
                            f"{num(m.value)} [{num(m.ci_low)}, {num(m.ci_high)}] is optimistic (the metric's own "
                            f"noise was selected for); beside it, {side}, which did not select it — judge the rung "
                            f"by the held-out metric's gain over the other rows."))
        else:
            out.append(Step("selected_by_metric", f"{r.stage} was selected by its own metric ({r.metric_name} "
                            f"{num(m.value)}), so that number is optimistic — the metric's own noise was selected "
                            f"for. Score it with a second, held-out metric: list it under `metrics:` (e.g. a "
                            f"different judge model or criteria) and compare the two side by side."))
    return out


MIN_EFFECT = 0.005
"""Below this an observed difference is called ~0: no n is quoted for detecting it."""


RULES: list[Rule] = [damaged_samples, retry_errors, stop_hits_low, evaluate_more, context_trimmed, few_shot_worse,
                     loss_above_chance, unread_answers, no_better_than_majority, rl_below_best_of_n,
                     distil_best_of_n, best_of_n_before_rl, no_rung_helps, underpowered, target_not_reached,
                     selected_by_metric, other_warnings]


def next_steps(ev: Evidence) -> list[Step]:
    return [step for rule in RULES for step in rule(ev)]


def steps_markdown(steps: list[Step]) -> str:
    if not steps:
        return "Next steps: nothing flagged — read some samples before deciding to climb further.\n"
    return "Next steps:\n" + "".join(f"- {s.text} _({s.rule})_\n" for s in steps)


def print_next_steps(steps: list[Step], console: Any = None) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ladder.progress import stdout_console

    console = console or stdout_console()
    if not steps:
        console.print("Next steps: nothing flagged — read some samples before deciding to climb further.")
        return
    console.print("[bold]Next steps[/bold]")
    # A grid, so a step that wraps continues under its own text, not at column 0 under the bullet.
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for s in steps:
        grid.add_row("  •", f"{escape(s.text)} [dim]({s.rule})[/dim]")
    console.print(grid, highlight=False)
