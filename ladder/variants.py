"""Variants of one experiment in one YAML, run on the same examples and compared pairwise.

    variants:                 # name -> overrides (dotted keys, as --set takes them; values YAML)
      base: {}
      terse: {task.instruction: "Answer with one word."}
    sweep:                    # a grid: key -> values; each point named from its values
      generation.temperature: [0, 0.7]
    models: [ladder-tiny, {backend: openai, name: gpt-4o-mini}]   # a sweep over `model`
    baseline: base            # what every other variant is compared with (default: the first)

`variants`, `sweep` and `models` multiply: every named variant is run at every grid point, named
`terse,temperature=0.7` (only the parts there are). Each expanded variant is validated through the
normal loader before anything runs, so a bad override is the usual one-paragraph error, naming the
variant.

Layout: each variant is an ordinary experiment folder at results/<exp>/variants/<variant>/ (its
own summary.csv, stages, run ids); results/<exp>/summary.csv is the combined table: one row per
variant and stage with a `variant` column and the paired difference from the baseline variant's
same stage (`diff_base*`, with its MDE), on the example ids both scored, and `best` (a stage's
best variant when its lead over every other survives Holm); results/<exp>/variants.json names the
baseline and the variants (ladder/variants_folder.py reads the folder back whole). With more
than one comparison per stage (more than two variants) the intervals and p-values are Holm-adjusted (`diff_base_adjust`
says so): the comparisons of a stage are ordered by p-value and the i-th (from 0) of m gets a
(1 − 0.05/(m − i)) interval, the standard step-down Holm levels; `diff_base_p_holm` is Holm's
adjusted p-value (max over earlier ranks of min(1, (m − j)·p_(j))). m counts distinct (run, baseline
run) pairs: variants holding the same run (a sweep over a later stage repeats the earlier runs) share
one result, and one holding the baseline's own run is no comparison (`diff_base_adjust`: same run).

Variants cannot change the test examples (data, target, subsample, seed): they would no longer be
paired, so such an override is refused. Variants whose every model is an HTTP API model (openai,
anthropic; no local weights) run at the same time, each in its own thread, sharing one rate
controller per model (ladder/backends/limits.py), so four of them take about the time of one
until the provider's limit binds; the combined table is the same as from running them one by one.
Variants with a local (hf) model anywhere run one after another (one model in memory at a time);
model calls they share (same model, prompt and sampling settings) come from the model-call cache.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.errors import ConfigError, LadderError
from ladder.stats import holm, t_p_value  # noqa: F401 - re-exported: the combined table's tests
from ladder.variants_table import (  # noqa: F401 - re-exported: ladder.variants' public names
    ALPHA, BEST, DIFF_BASE, combined_rows, level_mde, print_combined, variant_diffs, write_combined)

VARIANT_KEYS = ("variants", "sweep", "models", "baseline")
# What decides the test examples: a variant changing one would not be paired with the others.
FIXED = ("seed", "subsample", "task.data", "task.hub_config", "task.test_split", "task.test_size",
         "task.target", "task.target_map", "task.id_field", "task.custom", "name", "results_dir",
         "cache_dir", *VARIANT_KEYS)
@dataclass
class Variant:
    name: str
    overrides: dict[str, Any]
    """Dotted key -> value, in the order applied."""
    experiment: Any = None
    """The validated ladder.config.Experiment, its results under results/<exp>/variants/<name>."""


def has_variants(raw: dict[str, Any]) -> bool:
    return any(raw.get(k) for k in ("variants", "sweep", "models"))


def _short(key: str, keys: list[str]) -> str:
    """`generation.temperature` -> `temperature` when no other sweep key ends the same way."""
    last = key.rsplit(".", 1)[-1]
    return last if sum(k.rsplit(".", 1)[-1] == last for k in keys) == 1 and not last.isdigit() else key


def _label(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("name", json.dumps(value, sort_keys=True))
    text = value if isinstance(value, str) else json.dumps(value)
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "_", text)


def expand(raw: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, overrides) of every variant, in order: named variants × the sweep grid × models."""
    named = [(str(n), dict(o or {})) for n, o in (raw.get("variants") or {}).items()] or [("", {})]
    axes: list[list[tuple[str, dict[str, Any]]]] = []
    sweep = raw.get("sweep") or {}
    for key, values in sweep.items():
        short = _short(key, list(sweep))
        axes.append([(f"{short}={_label(v)}", {key: v}) for v in values])
    if raw.get("models"):
        axes.append([(_label(m), {"model": m if isinstance(m, dict) else {**_model(raw), "name": m}})
                     for m in raw["models"]])
    out = []
    for (name, over), *points in itertools.product(named, *axes):
        merged = dict(over)
        for _, o in points:
            merged.update(o)
        out.append((",".join(p for p in (name, *(n for n, _ in points)) if p), merged))
    return out


def _model(raw: dict[str, Any]) -> dict[str, Any]:
    model = raw.get("model")
    return {k: v for k, v in model.items() if k != "name"} if isinstance(model, dict) else {"backend": "hf"}


def _fixed(key: str) -> str | None:
    for p in FIXED:
        if key == p or key.startswith(p + ".") or p.startswith(key + "."):
            return p
    return None


def load_variants(config: Any, sets: list[str] = (), only: list[str] | None = None) -> list[Variant]:
    """The experiment's variants, each validated as its own experiment (or [] when the YAML has
    none); `only` keeps the named ones. `config` is the Experiment already loaded (what the
    commands pass: the YAML is read once per command) or a YAML path (read here, with `sets`).
    Raises the usual one-paragraph ConfigError naming the variant for a bad override, before
    anything is written."""
    from ladder.config import Experiment, apply_override, load_experiment, validate

    base = config if isinstance(config, Experiment) else load_experiment(config, list(sets))
    raw = base.raw
    path = base.source if base.source is not None else "<config>"
    where = str(path)
    if not has_variants(raw):
        if raw.get("baseline"):
            raise ConfigError(f"baseline '{raw['baseline']}' names a variant, and this experiment has none",
                              where=where, field="baseline",
                              fix="drop `baseline:`, or add the variants under `variants:` (or `sweep:`/`models:`)")
        if only:
            raise ConfigError(f"--variant {', '.join(only)}: this experiment has no variants", where=where,
                              fix="drop --variant, or add a `variants:` (or `sweep:`/`models:`) section")
        return []
    specs = expand(raw)
    names = [n for n, _ in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"two variants are both named '{dup[0]}' (a named variant and a sweep point, "
                          f"or the same sweep value listed twice)", where=where, field="variants",
                          fix="rename one of the variants, or remove the repeated sweep value")
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in names:
        raise ConfigError(f"baseline '{baseline}' is not a variant", where=where, field="baseline",
                          fix=f"name one of: {', '.join(names)}")
    unknown = [n for n in dict.fromkeys(only or []) if n not in names]
    if unknown:
        raise ConfigError(f"--variant {unknown[0]} names no variant of this experiment", where=where,
                          field="--variant", fix=f"use one of: {', '.join(names)} (`ladder variants "
                                                 f"{path}` lists them one a line)")
    results_dir = Path(base.config.results_dir) / base.config.name / "variants"
    out = []
    for name, overrides in specs:
        if only and name not in only:
            continue
        for key in overrides:
            fixed = _fixed(str(key))
            if fixed:
                raise ConfigError(f"variant '{name}' overrides '{key}', which decides the test examples "
                                  f"(or where results go): every variant must be measured on the same "
                                  f"examples to be compared pairwise", where=where, field=f"variants.{name}",
                                  fix=f"remove '{key}' from the variant; to evaluate other data, write a "
                                      f"second experiment and compare the two")
        vraw = copy.deepcopy(raw)
        for k in VARIANT_KEYS:
            vraw.pop(k, None)
        items = [f"{key}={json.dumps(value)}" for key, value in overrides.items()]
        try:
            for item in items:
                apply_override(vraw, item)
            exp = validate(vraw, source=base.source, overrides=items)
        except ConfigError as exc:
            said = exc.render().replace("(--set ", f"(variant {name}: ")
            if f"variant {name}" not in said:
                said = f"variant {name}: {said}"
            raise ConfigError(said.rstrip(".")) from None
        # Each variant is an ordinary experiment folder under results/<exp>/variants/.
        exp.config = exp.config.model_copy(update={"results_dir": str(results_dir), "name": name})
        out.append(Variant(name, overrides, exp))
    return out


def baseline_name(raw: dict[str, Any]) -> str:
    return raw.get("baseline") or expand(raw)[0][0]


# ---------------------------------------------------------------------------------------------
# Running


API_BACKENDS = ("openai", "anthropic")


def api_bound(v: Variant) -> bool:
    """Whether every model the variant names (its model, stage models, judges) is an HTTP API
    model: nothing to hold in memory, so it can run beside other variants."""
    backends = [v.experiment.model.backend]

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if isinstance(x.get("backend"), str):
                backends.append(x["backend"])
            for value in x.values():
                walk(value)
        elif isinstance(x, list):
            for value in x:
                walk(value)

    walk(v.experiment.raw)
    return all(b in API_BACKENDS for b in backends)


def run_variants(variants: list[Variant], only: list[str] | None = None, climb: dict[str, Any] | None = None):
    """Run each variant's stages: API-bound variants (`api_bound`) all at once, in threads, the
    others one after another (model calls they share come from the cache). Returns {variant:
    results}; with `climb` (run_climb's keyword arguments), climbs each and returns {variant:
    (record, results)}. Climbs run one after another (each decides its next rung from the last)."""
    from ladder.progress import console
    from ladder.runner import run_experiment

    if climb is None and len(variants) > 1 and all(api_bound(v) for v in variants):
        return _run_together(variants, only)
    out = {}
    for v in variants:
        console.print(f"[bold cyan]variant {v.name}[/bold cyan]"
                      + (f"  ({', '.join(f'{k}={json.dumps(x)}' for k, x in v.overrides.items())})"
                         if v.overrides else ""), highlight=False)
        if climb is not None:
            from ladder.climb import climb as run_climb
            out[v.name] = run_climb(v.experiment, only=only, **climb)
        else:
            out[v.name] = run_experiment(v.experiment, only=only)
    return out


def _run_together(variants: list[Variant], only: list[str] | None) -> dict[str, Any]:
    """API-bound variants at once, one daemon thread each (Ctrl-C ends the process; what each
    finished is in its results and the cache). The first failure is raised once all have ended,
    so the others' work is not thrown away."""
    import threading

    from ladder.progress import console
    from ladder.runner import run_experiment

    console.print(f"[bold cyan]variants {', '.join(v.name for v in variants)}[/bold cyan] run at the same time "
                  f"(API models only; one rate budget per model)", highlight=False)
    out: dict[str, Any] = {}
    failed: list[BaseException] = []

    def one(v: Variant) -> None:
        try:
            out[v.name] = run_experiment(v.experiment, only=only)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread below
            failed.append(exc)

    threads = [threading.Thread(target=one, args=(v,), name=f"variant {v.name}", daemon=True) for v in variants]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins: Ctrl-C reaches the main thread at once
    if failed:
        raise failed[0]
    return {v.name: out[v.name] for v in variants}



def list_names(path: str | Path, sets: list[str] = ()) -> list[str]:
    """The variant names, in order (for a job array to index)."""
    names = [v.name for v in load_variants(path, sets)]
    if not names:
        raise ConfigError("this experiment has no variants", where=str(path),
                          fix="add a `variants:` (or `sweep:`/`models:`) section; see configs/variants.yaml")
    return names


@dataclass
class VariantsRun:
    """What `run_main` did: each variant's results (and climb), and the combined table it wrote."""

    folder: Path
    """The combined folder, results/<exp>/ (each variant under variants/<name>/)."""
    baseline: str
    rows: list[dict[str, Any]]
    """The combined table's rows (summary.csv), for `print_combined`."""
    title: str
    results: dict[str, list[Any]] = field(default_factory=dict)
    """Variant name → its StageResults, in the order the variants ran."""
    climbs: dict[str, Any] = field(default_factory=dict)
    """With `climb`: variant name → its ladder.climb.Climb record."""


def run_main(base: Any, variants: list[Variant], only: list[str] | None = None,
             climb: dict[str, Any] | None = None) -> VariantsRun:
    """What `ladder run/climb` do with an experiment that has variants (`base`, the Experiment
    loaded once; `variants`, those of `load_variants(base)` to run): each variant run (or climbed),
    then the combined table written, also after a failure or Ctrl-C. Prints progress, not the table."""
    raw = base.raw
    folder = base.results_path
    names = [n for n, _ in expand(raw)]
    base_name = baseline_name(raw)
    if len(variants) > 1:
        # Each variant's data, templates and models are checked before the first writes anything:
        # a template naming a missing field in the fifth variant must not stop the run half-way.
        from ladder.runner import prepare

        for v in variants:
            try:
                prepare(v.experiment).pool.close()
            except LadderError as exc:  # the usual error, saying which variant it is about
                exc.where = f"{exc.where or v.experiment.source} (variant {v.name})"
                raise
    rows: list[dict[str, Any]] = []
    try:
        out = run_variants(variants, only=only, climb=climb)
    finally:  # even after a failure or Ctrl-C: the table of whatever finished
        if any((folder / "variants" / n / "summary.csv").exists() for n in names):
            rows = write_combined(folder, names, base_name)
    done = VariantsRun(folder, base_name, rows, f"{base.config.name}  ({folder}/summary.csv)  baseline: {base_name}")
    for name, got in out.items():
        if climb is not None:
            done.climbs[name], done.results[name] = got
        else:
            done.results[name] = got
    return done
