"""Stages against each other on the same examples, and what to try next.

Paired differences: every stage evaluates the same test examples, so two stages are compared
example by example (samples.jsonl records joined on their id; each record's `score` is the
per-example value the stage metric averages). `paired_diff` gives the mean difference with a
95% t interval — far narrower than comparing two unpaired CIs by eye.

Next steps: a short list of rule-based suggestions drawn from the numbers on disk (guards,
stats and metrics in metrics.json, paired differences, climb.json). Each rule is a small named
function `rule(ev) -> list[Step]` in RULES; the first line of its docstring says when it fires.
Other stages feed the rules through names they already write: guards `stop_hit`, `context`,
`errors`, a chance-loss guard named in CHANCE_GUARDS (sft), stage types `best_of_n`, `sft`, `rl`.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ladder.config import GuardsConfig
from ladder.stats import paired_diff
from ladder.store import read_json, read_jsonl, records_digest
from ladder.table import num
from ladder.types import Guard, MetricValue, StageResult

PROMPTING = ("zero_shot", "few_shot")
CHANCE_GUARDS = ("chance_loss", "baseline_loss")
"""Guard names (level warn) that mean: SFT's test loss is not below chance, −log(1/K)."""
WELL_ABOVE = 0.05
"""A gain this large (with its CI above 0) is worth acting on."""


@dataclass
class Evidence:
    """What the rules look at: an experiment's results, its resolved config and per-example scores."""

    folder: Path
    results: list[StageResult]
    config: dict[str, Any] = field(default_factory=dict)
    climb: dict[str, Any] | None = None

    @classmethod
    def load(cls, folder: Path, results: list[StageResult] | None = None) -> Evidence:
        import yaml

        config = yaml.safe_load((folder / "experiment.yaml").read_text()) if (folder / "experiment.yaml").exists() else {}
        climb = read_json(folder / "climb.json") if (folder / "climb.json").exists() else None
        results = load_results(folder) if results is None else results
        for r in results:  # a Δ's n must never silently disagree with the row's n
            flag_damaged(folder, r)
        return cls(folder, results, config or {}, climb)

    def scores(self, r: StageResult) -> dict[str, float]:
        return example_scores(self.folder / r.stage / r.run_id / "samples.jsonl")

    def diff(self, a: StageResult, b: StageResult) -> MetricValue:
        """a − b, paired on the examples both have a score for."""
        sa, sb = self.scores(a), self.scores(b)
        common = [i for i in sa if i in sb]
        return paired_diff([sa[i] for i in common], [sb[i] for i in common])

    def of_type(self, *types: str) -> list[StageResult]:
        return [r for r in self.results if r.type in types]

    @property
    def min_n(self) -> int:
        return int((self.config.get("guards") or {}).get("min_n", GuardsConfig().min_n))


_SCORES: dict[tuple[str, int, int], dict[str, float]] = {}


def example_scores(path: Path) -> dict[str, float]:
    """Example id → score from a samples.jsonl; failed records (retried on re-run) are left out.

    The runner rewrites the summary after every stage, re-reading every earlier stage's file;
    a best_of_n file with 100 samples an example is worth not parsing again while unchanged."""
    if not path.exists():
        return {}
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _SCORES:
        if len(_SCORES) > 256:  # a long-lived process (tests, notebooks) sees many experiments
            _SCORES.clear()
        _SCORES[key] = {str(rec["id"]): float(rec["score"]) for rec in read_jsonl(path)
                        if not rec.get("error") and rec.get("score") is not None}
    return _SCORES[key]


DAMAGED = "samples_mismatch"
"""The guard put on a result whose samples.jsonl no longer holds what its metrics.json summarised."""


def samples_mismatch(folder: Path, r: StageResult) -> str | None:
    """Why a finished stage's samples.jsonl no longer matches the records its metrics.json
    summarised (count and digest of id → score), or None when it does (or nothing was recorded:
    results written before ladder recorded it, or a stage that does not summarise samples.jsonl)."""
    rec = r.stats.get("records")
    if not rec:
        return None
    scores = example_scores(folder / r.stage / r.run_id / "samples.jsonl")
    if len(scores) == rec["count"] and records_digest(scores) == rec["digest"]:
        return None
    if len(scores) != rec["count"]:
        what = f"holds {len(scores)} scored examples where metrics.json summarised {rec['count']}"
    else:
        what = "holds other scores than the ones metrics.json summarised (it was edited)"
    return (f"{r.stage}/{r.run_id}/samples.jsonl {what}: its n and the paired differences computed "
            f"from the file disagree")


def flag_damaged(folder: Path, r: StageResult) -> str | None:
    """Put (or take off) the DAMAGED warning on `r`; returns the mismatch, if any."""
    why = samples_mismatch(folder, r)
    r.guards = [g for g in r.guards if g.name != DAMAGED]
    if why:
        r.guards.append(Guard(DAMAGED, "warn", f"{why}; run the same command again (`ladder run`) to "
                                               f"re-score it from the model-call cache"))
    return why


def load_results(folder: Path) -> list[StageResult]:
    """The stages in summary.csv, in table order, from their metrics.json."""
    path = folder / "summary.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        metrics = folder / row["stage"] / row["run_id"] / "metrics.json"
        if metrics.exists():
            out.append(StageResult.from_dict(read_json(metrics)))
    return out


# ---------------------------------------------------------------------------------------------
# Paired differences for the table


def paired_columns(ev: Evidence) -> dict[str, dict[str, Any]]:
    """Per stage: diff_prev (against the row above) and diff_zero (against the first zero_shot),
    each with its CI and paired n, ready for summary.csv."""
    zero = next((r for r in ev.results if r.type == "zero_shot"), None)
    out: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(ev.results):
        cols: dict[str, Any] = {}
        for name, other in (("diff_prev", ev.results[i - 1] if i else None), ("diff_zero", zero)):
            if other is None or other is r:
                continue
            d = ev.diff(r, other)
            cols.update({name: d.value, f"{name}_ci_low": d.ci_low, f"{name}_ci_high": d.ci_high,
                         f"{name}_n": d.n})
        out[r.stage] = cols
    return out


def describe(d: MetricValue) -> str:
    """'+0.120 [+0.050, +0.190], n=300' — a difference as the tables print it."""
    if d.n == 0:
        return "n/a (no common examples)"
    ci = "" if math.isnan(d.ci_low) else f" [{num(d.ci_low, True)}, {num(d.ci_high, True)}]"
    return f"{num(d.value, True)}{ci}, n={d.n}"


# ---------------------------------------------------------------------------------------------
# Next steps


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
    failed = [(r.stage, r.stats.get("errors", 0)) for r in ev.results if r.stats.get("errors", 0)]
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
    from ladder.errors import LadderError
    from ladder.registry import STAGES

    try:
        return STAGES.get(r.type).evaluates_test_subsample
    except LadderError:  # a plugin stage no longer importable: assume the usual
        return True


def context_trimmed(ev: Evidence) -> list[Step]:
    """Few-shot prompts had to drop shots to fit the context window."""
    hit = _guards(ev, ("context",))
    if not hit:
        return []
    return [Step("context_trimmed", f"{_stages(hit)}: shots were dropped to fit the context window — "
                                    f"lower k, shorten the instruction, or use a longer-context model.")]


def few_shot_worse(ev: Evidence) -> list[Step]:
    """A few_shot stage scores significantly below zero_shot (paired CI below 0)."""
    zero = ev.of_type("zero_shot")
    if not zero:
        return []
    return [Step("few_shot_worse", f"{r.stage} is worse than {zero[0].stage} ({describe(d)}): check the shot "
                                   f"formatting (do the shots' answers look like the answer you want?) and the "
                                   f"label balance of the shots; read a few prompts in samples.jsonl.")
            for r in ev.of_type("few_shot") if (d := ev.diff(r, zero[0])).ci_high < 0]


def loss_above_chance(ev: Evidence) -> list[Step]:
    """An sft stage's test loss is not below chance level −log(1/K) (a chance-loss guard warns)."""
    hit = _guards(ev, CHANCE_GUARDS)
    if not hit:
        return []
    return [Step("loss_above_chance", f"{_stages(hit)}: the test loss did not get below chance level — "
                                      f"raise the learning rate or train more epochs (look at the loss "
                                      f"curve in `ladder report`: flat means too low a rate, rising "
                                      f"means too high).")]


def _best(ev: Evidence, *types: str) -> StageResult | None:
    found = ev.of_type(*types)
    return max(found, key=lambda r: r.metric.value) if found else None


def distil_best_of_n(ev: Evidence) -> list[Step]:
    """best_of_n beats the best greedy prompting rung clearly, and no sft stage has caught up."""
    ref = _best(ev, *PROMPTING)
    sft = _best(ev, "sft")
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
            for bon in ev.of_type("best_of_n")
            if (d := ev.diff(bon, ref)).ci_low > 0 and d.value >= WELL_ABOVE
            and (sft is None or sft.metric.value < bon.metric.value)]


def rl_below_best_of_n(ev: Evidence) -> list[Step]:
    """An rl stage scores significantly below best-of-N: its own (same reward, same examples),
    else a best_of_n stage's."""
    out = []
    for rl in ev.of_type("rl"):
        own = rl.extra.get("best_of_n") or {}
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
        best = _best(ev, "best_of_n")
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
    """An rl stage ran with no best-of-N beside it (its own was turned off, and no best_of_n stage)."""
    if ev.of_type("best_of_n"):
        return []
    if any(not rl.extra.get("best_of_n") for rl in ev.of_type("rl")):
        return [Step("best_of_n_before_rl", "rl ran without best_of_n: run best_of_n with the same reward "
                                            "— it shows what high-reward samples look like and exposes "
                                            "a broken reward for free.")]
    return []


def no_rung_helps(ev: Evidence) -> list[Step]:
    """Two or more rungs ran and none is significantly above zero_shot."""
    zero = ev.of_type("zero_shot")
    # An oracle above zero_shot shows the answers are in the samples, not that a rung helps.
    others = [r for r in ev.results if r.type != "zero_shot" and not r.oracle]
    if not zero or not others:
        return []
    if any(ev.diff(r, zero[0]).ci_low > 0 for r in others):
        return []
    return [Step("no_rung_helps", f"no rung is clearly above {zero[0].stage} yet: look at the samples "
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


RULES: list[Rule] = [damaged_samples, retry_errors, stop_hits_low, evaluate_more, context_trimmed, few_shot_worse,
                     loss_above_chance, rl_below_best_of_n, distil_best_of_n, best_of_n_before_rl,
                     no_rung_helps, target_not_reached]


def next_steps(ev: Evidence) -> list[Step]:
    return [step for rule in RULES for step in rule(ev)]


def steps_markdown(steps: list[Step]) -> str:
    if not steps:
        return "Next steps: nothing flagged — read some samples before deciding to climb further.\n"
    return "Next steps:\n" + "".join(f"- {s.text} _({s.rule})_\n" for s in steps)


def print_next_steps(steps: list[Step]) -> None:
    from rich.markup import escape

    from ladder.progress import stdout_console

    console = stdout_console()
    if not steps:
        console.print("Next steps: nothing flagged — read some samples before deciding to climb further.")
        return
    console.print("[bold]Next steps[/bold]")
    for s in steps:
        console.print(f"  • {escape(s.text)} [dim]({s.rule})[/dim]", highlight=False)
