"""Stages against each other on the same examples: the evidence the table and the advice read.

Paired differences: every stage evaluates the same test examples, so two stages are compared
example by example (samples.jsonl records joined on their id; each record's `score` is the
per-example value the stage metric averages). `paired_diff` gives the mean difference with a
95% t interval — far narrower than comparing two unpaired CIs by eye.

The table's `Δ zero_shot` column is measured against the *reference* row: the first stage of the
prompting family (`Stage.family`), whatever its type is called.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.plugins import load_recorded
from ladder.stats import IDENTICAL, identical, num, paired_diff
from ladder.store import read_json, read_jsonl, records_digest
from ladder.types import Guard, MetricValue, Record, StageResult


def stage_class(type_name: str) -> Any:
    """The Stage class registered for a result's type, or None when it no longer imports (a
    plugin uninstalled since the run): the table and advice then treat its row as a plain one."""
    from ladder.errors import LadderError
    from ladder.registry import STAGES

    try:
        return STAGES.get(type_name)
    except LadderError:
        return None


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
        load_recorded((config or {}).get("plugins"))  # a plugin stage's family and advice, when its file is still there
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

    def stage_class(self, r: StageResult) -> Any:
        return stage_class(r.type)

    def family(self, r: StageResult) -> str | None:
        """The stage's family (prompting, sampling, training), None when its class is gone."""
        cls = stage_class(r.type)
        return None if cls is None else cls.family

    def of_family(self, *families: str) -> list[StageResult]:
        return [r for r in self.results if self.family(r) in families]

    @property
    def reference(self) -> StageResult | None:
        """The row every stage's `diff_zero` (Δ zero_shot) is measured against: the first stage of
        the prompting family in table order (zero_shot in the usual ladder)."""
        return next(iter(self.of_family("prompting")), None)

    @property
    def min_n(self) -> int:
        from ladder.config import GuardsConfig

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
        _SCORES[key] = {str(rec.id): float(rec.score) for d in read_jsonl(path)
                        if not (rec := Record.from_dict(d)).error and rec.score is not None}
    return _SCORES[key]


DAMAGED = "samples_mismatch"
"""The guard put on a result whose samples.jsonl no longer holds what its metrics.json summarised."""


def samples_mismatch(folder: Path, r: StageResult) -> str | None:
    """Why a finished stage's samples.jsonl no longer matches the records its metrics.json
    summarised (count and digest of id → score), or None when it does (or nothing was recorded:
    results written before ladder recorded it, or a stage that does not summarise samples.jsonl)."""
    rec = r.stats.records
    if not rec:
        return None
    scores = example_scores(folder / r.stage / r.run_id / "samples.jsonl")
    if len(scores) == rec.count and records_digest(scores) == rec.digest:
        return None
    if len(scores) != rec.count:
        what = f"holds {len(scores)} scored examples where metrics.json summarised {rec.count}"
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
    """Per stage: diff_prev (against the row above) and diff_zero (against the reference row, the
    first prompting stage), each with its CI and paired n, ready for summary.csv."""
    zero = ev.reference
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
    if identical(d.value, d.ci_low, d.ci_high):
        return f"{IDENTICAL}, n={d.n}"
    ci = "" if math.isnan(d.ci_low) else f" [{num(d.ci_low, True)}, {num(d.ci_high, True)}]"
    return f"{num(d.value, True)}{ci}, n={d.n}"
