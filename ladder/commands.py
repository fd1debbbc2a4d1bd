"""`ladder.run` and `ladder.check`: what `ladder run` and `ladder check` do, from Python.

    import ladder
    res = ladder.run("configs/quickstart.yaml", set={"subsample.n": 50}, only=["zero_shot"])
    res.stages[["stage", "value", "ci_low", "ci_high", "n"]]

The command line (ladder/cli.py) is a thin layer over the functions here: it loads nothing and
decides nothing itself, only prints and turns a LadderError into its exit code. Here a bad config,
a missing file or a run whose stage scored no example raises that same LadderError (the same
one-paragraph message the CLI prints) and nothing calls sys.exit, so a notebook keeps its kernel.

The YAML is read and validated once per command (`load`); a variants experiment's variants are
built from that one Experiment.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ladder.errors import LadderError, NothingMeasured

if TYPE_CHECKING:
    from ladder.climb import Climb
    from ladder.config import Experiment
    from ladder.frames import Frames
    from ladder.types import StageResult
    from ladder.variants import VariantsRun

ConfigLike = Union[str, Path, Mapping[str, Any], "Experiment"]
"""A YAML file, the same experiment as a dict (paths in it read from the current folder), or an
Experiment already loaded."""
SetLike = Union[Mapping[str, Any], Sequence[str], None]
"""Overrides: {"subsample.n": 50, "stages.1.k": 8}, or the CLI's ["subsample.n=50"] items."""


def overrides(set: SetLike) -> list[str]:  # noqa: A002 - the CLI's option name
    """`set=` as the CLI's `--set KEY=VALUE` items (a value as JSON, which YAML reads back as it was)."""
    if not set:
        return []
    if isinstance(set, Mapping):
        return [f"{key}={json.dumps(value)}" for key, value in set.items()]
    if isinstance(set, str):  # one item, not its characters
        return [set]
    return [str(item) for item in set]


def load(config: ConfigLike, set: SetLike = None, plugins: Sequence[str] = ()) -> Experiment:  # noqa: A002
    """The experiment, read and validated once, with the overrides applied (ConfigError if bad).
    `plugins` (the command line's --plugin: .py paths relative to the working directory, or module
    names) are loaded first, before the YAML's own `plugins:`."""
    from ladder.config import Experiment, apply_override, load_experiment, validate
    from ladder.errors import ConfigError
    from ladder.plugins import load_plugins

    load_plugins(plugins, Path.cwd(), where="the command line", field="--plugin", base="the working directory")
    items = overrides(set)
    if isinstance(config, Experiment):
        if items:
            raise LadderError("set= applies to a YAML file or dict, not to an Experiment already loaded",
                              field="set", fix="pass the YAML's path (or its dict) with set=")
        return config
    if isinstance(config, Mapping):
        raw = copy.deepcopy(dict(config))
        for item in items:
            try:
                apply_override(raw, item)
            except ConfigError as exc:
                raise ConfigError(exc.message, where=f"<config> (--set {item})", field=exc.field,
                                  fix=exc.fix) from None
        return validate(raw, source=None, overrides=items)
    if not isinstance(config, (str, Path)):
        raise LadderError(f"config is a {type(config).__name__}", field="config",
                          fix="pass a YAML file's path (e.g. configs/quickstart.yaml) or the experiment as a dict")
    return load_experiment(config, items)


@dataclass
class Outcome:
    """What one `ladder run` or `ladder climb` did."""

    experiment: Experiment
    """The experiment as loaded (with variants: the base the variants were built from)."""
    folder: Path
    """Its results folder (with variants: the combined one, results/<exp>/)."""
    results: list[StageResult]
    """The stages' results (empty with variants: see `variants.results`)."""
    climb: Climb | None = None
    """`ladder climb` without variants: its decisions (climb.json)."""
    variants: VariantsRun | None = None
    """With variants: each variant's results (and climb), and the combined table."""

    def per_folder(self) -> list[tuple[list[StageResult], Path]]:
        if self.variants is None:
            return [(self.results, self.folder)]
        return [(results, self.folder / "variants" / name) for name, results in self.variants.results.items()]

    def raise_unmeasured(self) -> None:
        """NothingMeasured (exit 1) when a stage ended with n=0: its row has no number, and a script
        checking the exit code must not take the run for a result."""
        for results, folder in self.per_folder():
            _unmeasured(results, folder)


def _unmeasured(results: list, folder: Path) -> None:
    from ladder.store import read_jsonl
    from ladder.types import Record

    empty = [r for r in results if r.metric.n == 0]
    if not empty:
        return
    said = []
    for r in empty:
        path = folder / r.stage / r.run_id / "samples.jsonl"
        why = next((s.get("error") for rec in map(Record.from_dict, reversed(read_jsonl(path))) if rec.error
                    for s in rec.samples if s.get("error")), None)
        failed = r.stats.errors
        said.append(f"{r.stage} ({failed} examples failed after all retries" + (f", e.g. {why}" if why else "")
                    + f"; see {path})" if failed else f"{r.stage} (no example was scored)")
    raise NothingMeasured(f"the run finished, but {len(empty)} of {len(results)} stages scored no example "
                          f"(n=0), so their rows hold no number: {'; '.join(said)}",
                          fix="fix the cause (server, key, model name, base_url), then run the same command "
                              "again: finished examples are kept and only the failed ones are retried")


def execute(exp: Experiment, only: Sequence[str] | None = None, variant: Sequence[str] | None = None,
            climb: dict[str, Any] | None = None) -> Outcome:
    """Run (or, with `climb` = run_climb's keyword arguments, climb) the loaded experiment: each
    selected variant when it has variants, else its stages. Prints progress; returns what ran."""
    from ladder.variants import load_variants, run_main

    only = list(only) if only else None
    chosen = load_variants(exp, only=list(variant) if variant else None)
    if chosen:
        done = run_main(exp, chosen, only, climb=climb)
        return Outcome(exp, done.folder, [], variants=done)
    if climb is not None:
        from ladder.climb import climb as run_climb

        record, results = run_climb(exp, only=only, **climb)
        return Outcome(exp, exp.results_path, results, climb=record)
    from ladder.runner import run_experiment

    return Outcome(exp, exp.results_path, run_experiment(exp, only=only))


def log(outcome: Outcome, command: str, items: list[str]) -> None:
    """One entry in results/<exp>/log.jsonl and LOG.md for the run that just finished (n=0 runs too)."""
    from ladder.history import record

    if outcome.variants is not None and outcome.variants.climbs:
        said = "; ".join(f"{name}: {c.outcome}" for name, c in outcome.variants.climbs.items())
    else:
        said = outcome.climb.outcome if outcome.climb is not None else None
    record(outcome.folder, command, items, said)


def run(config: ConfigLike, set: SetLike = None, only: Sequence[str] | None = None,  # noqa: A002
        variant: str | Sequence[str] | None = None, plugins: Sequence[str] = ()) -> Frames:
    """Run the experiment as `ladder run` does (finished stages reused, interrupted ones resumed,
    the research log written) and return its results as `ladder.load(folder)` gives them:
    `.stages` (summary.csv) and `.samples`, pandas DataFrames.

    `config`: a YAML path, or the experiment as a dict. `set`: overrides, {"subsample.n": 50}.
    `only`: stage names to run (the others' finished results are reused). `variant`: a variant
    name (or several) of the YAML's variants/sweep. `plugins`: .py files or modules to load first
    (what `--plugin` loads; the YAML's own `plugins:` are loaded anyway).

    Raises LadderError (ConfigError, DataError, BackendError, ...) with the message the CLI prints
    for bad input, and NothingMeasured when a stage scored no example (the CLI's exit 1)."""
    from ladder.frames import load as load_frames

    exp = load(config, set, plugins)
    outcome = execute(exp, only, [variant] if isinstance(variant, str) else variant)
    log(outcome, "run", overrides(set))
    outcome.raise_unmeasured()
    return load_frames(outcome.folder)


@dataclass
class Checked:
    """What `ladder check` found: `plan` (one experiment's, or variant name → plan), and the first
    API server that could not be reached (raised once the plan is shown)."""

    plan: dict[str, Any]
    by_variant: bool
    failed: LadderError | None


def plan(exp: Experiment, variant: Sequence[str] | None = None, offline: bool = False) -> Checked:
    """The plan of a loaded experiment (every variant validated, none run): examples, samples, tokens,
    cost per stage, guards, the planned power and, unless offline, each API server's reachability."""
    from ladder.plan_print import _planned_power
    from ladder.reach import reachability
    from ladder.runner import estimate_run
    from ladder.variants import load_variants

    failures = []

    def one(e: Experiment) -> dict[str, Any]:
        out = estimate_run(e)
        if not offline:
            out["reachable"], failed = reachability(e)
            failures.append(failed)
        return out

    variants = load_variants(exp, only=list(variant) if variant else None)
    if variants:
        plans = {v.name: one(v.experiment) for v in variants}
    else:
        plans = {"": one(exp)}
    for out in plans.values():  # every variant is measured on the same subsample
        out["power"] = _planned_power(out.get("subsample_n", 0))
    failed = next((f for f in failures if f is not None), None)
    return Checked(plans if variants else plans[""], bool(variants), failed)


def check(config: ConfigLike, set: SetLike = None, variant: str | Sequence[str] | None = None,  # noqa: A002
          offline: bool = False, plugins: Sequence[str] = ()) -> dict[str, Any]:
    """Validate the config and data and return what a run would do, as `ladder check --json`
    prints it (with variants: variant name → plan), without generating anything. Unless `offline`,
    each API server the run would call gets one free request; one that cannot be reached raises."""
    checked = plan(load(config, set, plugins), [variant] if isinstance(variant, str) else variant, offline)
    if checked.failed is not None:
        raise checked.failed
    return checked.plan
