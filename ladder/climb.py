"""`ladder climb`: run the rungs cheapest first and stop at the first one that answers the question.

"Answers" means the stage metric reaches a target — by default its 95% CI lower bound (the rung
surely reaches it), or the point estimate with `by: value`. An oracle rung (one that reads the test
answers to pick its output, e.g. best_of_n with `scorer: metric`) never answers it: reaching the
target there only says an upper bound does, so the climb records it as such and goes on. Every rung gets a recorded decision
and reason in results/<exp>/climb.json: went on (below target), stopped (reached it, or
`--until`), skipped (a `skip:` reason in the YAML), not selected (`--only`), or not run (the
climb stopped below it). The stages themselves run through `run_experiment` and its `after`
hook, so climbing resumes, caches and reuses finished stages exactly like `ladder run`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ladder.config import EscalateConfig, Experiment, StageConfig
from ladder.errors import LadderError
from ladder.registry import STAGES
from ladder.types import StageResult

Decision = Literal["stop", "go_on", "until", "skipped", "not_selected", "not_run"]


@dataclass
class Rung:
    """One stage's line in climb.json."""

    stage: str
    type: str
    decision: Decision
    reason: str
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    oracle: bool = False
    """The rung reads the test examples' gold answers: its number is an upper bound, never a stop."""


@dataclass
class Climb:
    experiment: str
    target: float
    by: str
    until: str | None = None
    only: list[str] | None = None
    rungs: list[Rung] = field(default_factory=list)
    reached: bool = False
    """Some rung reached the target."""
    stopped_at: str | None = None
    exhausted: bool = False
    """Every selected rung ran and none reached the target."""
    outcome: str = ""
    upper_bounds: list[str] = field(default_factory=list)
    """Oracle rungs that reached the target: upper bounds the climb went past."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def settings(exp: Experiment, target: float | None, by: str | None) -> EscalateConfig:
    """The command line's --target/--by over the YAML's `escalate:` section."""
    base = exp.config.escalate
    if target is None and base is None:
        raise LadderError("no target to climb to", where=str(exp.source or "<config>"),
                          fix="pass --target 0.8, or add `escalate: {target: 0.8}` to the YAML")
    if by not in (None, "ci_low", "value"):
        raise LadderError(f"--by {by} is not ci_low or value", field="--by",
                          fix="ci_low: the CI's lower bound must reach the target; value: the point estimate")
    merged = {**(base.model_dump() if base else {}),
              **({"target": target} if target is not None else {}), **({"by": by} if by else {})}
    return EscalateConfig(**merged)


def decide(stage: StageConfig, result: StageResult | None, esc: EscalateConfig,
           until: str | None = None, only: list[str] | None = None) -> Rung:
    """Whether the climb goes on after `stage`, and why."""
    if stage.skip:
        return Rung(stage.name, stage.type, "skipped", f"skipped in the YAML: {stage.skip}")
    if only and stage.name not in only:
        return Rung(stage.name, stage.type, "not_selected", "not in --only")
    if result is None:  # run_experiment only passes None for the two cases above
        raise RuntimeError(f"stage {stage.name} ran but gave no result")
    m = result.metric
    got = getattr(m, esc.by)
    oracle = result.oracle or (STAGES.get(stage.type).reads_test_targets(stage) and not result.selected_by_metric)
    nums = dict(value=m.value, ci_low=m.ci_low, ci_high=m.ci_high, n=m.n, oracle=oracle)
    shown = f"{result.metric_name} {m.value:.3f} [{m.ci_low:.3f}, {m.ci_high:.3f}], n={m.n}"
    if not math.isnan(got) and got >= esc.target and (oracle or result.selected_by_metric):
        why = (f"{esc.by} {got:.3f} ≥ target {esc.target:g} ({shown}), but this rung is an oracle — it reads "
               f"the test answers to pick its output — so this is an upper bound, not an answer") if oracle else (
               f"{esc.by} {got:.3f} ≥ target {esc.target:g} ({shown}), but this rung was selected by the metric "
               f"that scores it — the metric's own noise was selected for — so the number is optimistic; "
               f"score it with a second, held-out metric (`metrics:`)")
        if stage.name == until:
            return Rung(stage.name, stage.type, "until", f"{why}; stopping here as --until {until} asks", **nums)
        return Rung(stage.name, stage.type, "go_on", f"{why}: on to the next rung", **nums)
    if not math.isnan(got) and got >= esc.target:
        return Rung(stage.name, stage.type, "stop", f"{esc.by} {got:.3f} ≥ target {esc.target:g} "
                    f"({shown}): this rung answers the question; the rungs above are not needed", **nums)
    why = f"{esc.by} {got:.3f} < target {esc.target:g} ({shown})"
    if esc.by == "ci_low" and m.value >= esc.target:
        why += "; the value reaches the target but its CI does not — more examples could settle it"
    if stage.name == until:
        return Rung(stage.name, stage.type, "until", f"{why}; stopping here as --until {until} asks", **nums)
    return Rung(stage.name, stage.type, "go_on", f"{why}: not there yet, on to the next rung", **nums)


def climb(exp: Experiment, target: float | None = None, by: str | None = None, until: str | None = None,
          only: list[str] | None = None) -> tuple[Climb, list[StageResult]]:
    """Run the rungs in order until one reaches the target; climb.json records every decision."""
    from ladder.progress import console
    from ladder.runner import run_experiment
    from ladder.store import ExperimentLock, write_json
    from ladder.table import write_summary

    esc = settings(exp, target, by)
    names = [s.name for s in exp.stages]
    for name in [until, *(only or [])]:
        if name is not None and name not in names:
            raise LadderError(f"no stage named '{name}'", field="--until/--only",
                              fix=f"use one of: {', '.join(names)}")
    if until and only and until not in only:
        raise LadderError(f"--until {until} is not among --only {', '.join(only)}", fix="drop one of them")
    record = Climb(exp.config.name, esc.target, esc.by, until, only)

    def after(stage: StageConfig, result: StageResult | None) -> bool:
        rung = decide(stage, result, esc, until, only)
        record.rungs.append(rung)
        if rung.oracle and rung.decision != "stop" and getattr(result.metric, esc.by) >= esc.target:
            record.upper_bounds.append(stage.name)
        color = {"stop": "green", "until": "yellow", "go_on": "cyan"}.get(rung.decision, "dim")
        console.print(f"[{color}]climb · {stage.name}: {rung.decision.replace('_', ' ')}[/{color}] — {rung.reason}",
                      highlight=False)
        return rung.decision not in ("stop", "until")

    results = run_experiment(exp, only=only, after=after)
    last = record.rungs[-1] if record.rungs else None
    if last is not None and last.decision in ("stop", "until"):
        record.stopped_at = last.stage
        record.reached = last.decision == "stop"
        for stage in exp.stages[len(record.rungs):]:
            record.rungs.append(Rung(stage.name, stage.type, "not_run", f"the climb stopped at {last.stage}"))
    record.exhausted = not record.reached and until is None
    record.outcome = _outcome(record)
    folder = exp.results_path
    with ExperimentLock(folder):
        write_json(folder / "climb.json", record.to_dict())
        write_summary(folder, results)  # again: its next steps read the final climb.json
    return record, results


def _outcome(c: Climb) -> str:
    bounds = (f"; {', '.join(c.upper_bounds)} reached it as an oracle (an upper bound, not an answer)"
              if c.upper_bounds else "")
    if c.reached:
        return f"reached: {c.stopped_at} meets the target ({c.by} ≥ {c.target:g}){bounds}"
    if c.stopped_at:
        return f"stopped at {c.stopped_at} (--until) below the target ({c.by} ≥ {c.target:g}){bounds}"
    return f"not reached: no rung got {c.by} ≥ {c.target:g}{bounds}"


def print_climb(c: Climb) -> None:
    from rich.markup import escape

    from ladder.progress import stdout_console

    console = stdout_console()
    color = "green" if c.reached else "yellow"
    console.print(f"[bold]Climb[/bold] to {c.by} ≥ {c.target:g}: [{color}]{escape(c.outcome)}[/{color}]")
    for r in c.rungs:
        console.print(f"  {r.stage:<14} {r.decision.replace('_', ' '):<12} {escape(r.reason)}", highlight=False)
