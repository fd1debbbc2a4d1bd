"""Is the proxy any good? A person's verdicts on a row's outputs, and the metric's agreement with them.

A judged metric (judge, classifier, pm, python) is a proxy for a behaviour; it means something only
as far as it agrees with people. `ladder label results/<exp> --stage S --n 50` shows a person S's
outputs one at a time (or reads verdicts from a file, `--from FILE`, or stdin, `--from -`) and appends
each verdict to results/<exp>/labels.jsonl:

    {"stage": "zero_shot", "id": "test-3", "digest": "<sha256 of the output text, 16 hex>", "label": 1}

The digest ties a verdict to the exact text labelled: re-run a stage and its changed outputs are
unlabelled again, never silently judged by an old verdict. The latest verdict on an output wins.

Every table then shows, for each judged row with labels, the metric's agreement with them: the
share of labelled outputs where the metric's verdict (score >= 0.5; a pairwise win rate > 0.5)
equals the person's, with a Wilson CI, and Cohen's κ with a bootstrap CI (2000 resamples of the
labelled examples, seed 0), and n. A labelled task whose `metrics:` put a judged metric beside a gold
one gets the same for that metric against the gold metric's verdicts, with no labelling.

Guards: `metric_unvalidated` (info) on a judged row with no labels; `metric_disagrees` (warn) when
κ's CI upper bound is under DISAGREES_BELOW; `labels_ignored` (warn) for labels naming examples this
row did not score (outside the subsample) or an earlier output of them — counted, never used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from ladder.errors import LadderError
from ladder.store import read_jsonl
from ladder.types import Guard, StageResult

if TYPE_CHECKING:
    from ladder.evidence import Evidence

LABELS = "labels.jsonl"
DISAGREES_BELOW = 0.4
"""κ whose CI upper bound is under this: the metric does not measure what people judge."""
BOOTSTRAP = 2000
YES = {"y", "yes", "1", "true", "good", "pass"}
NO = {"n", "no", "0", "false", "bad", "fail"}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def outputs(folder: Path, r: StageResult) -> dict[str, dict[str, Any]]:
    """Example id → the record a row scored (its output: a selecting stage's selected sample)."""
    out = {}
    for rec in read_jsonl(folder / r.stage / r.run_id / "samples.jsonl"):
        if rec.get("error") or rec.get("score") is None or not rec.get("samples"):
            continue
        rec["output"] = rec["samples"][rec.get("selected") or 0]["text"]
        out[str(rec["id"])] = rec
    return out


def read_labels(folder: Path) -> dict[tuple[str, str, str], int]:
    """(stage, id, digest) → the latest verdict (1 yes, 0 no) in labels.jsonl."""
    return {(str(d["stage"]), str(d["id"]), str(d["digest"])): int(d["label"]) for d in read_jsonl(folder / LABELS)}


def verdict(value: Any) -> int | None:
    if isinstance(value, bool) or value in (0, 1):
        return int(value)
    text = str(value).strip().lower()
    return 1 if text in YES else 0 if text in NO else None


# ---------------------------------------------------------------------------------------------
# Agreement


def kappa(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Cohen's κ of two 0/1 raters; None when it is undefined (both said one and the same class)."""
    n = len(a)
    if n == 0:
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return None if pe >= 1 else (po - pe) / (1 - pe)


def kappa_ci(a: Sequence[int], b: Sequence[int]) -> tuple[float | None, float | None]:
    """95% percentile bootstrap CI of κ (resamples where κ is undefined are left out)."""
    import numpy as np

    n = len(a)
    if n < 2:
        return None, None
    x, y = np.asarray(a, float), np.asarray(b, float)
    idx = np.random.default_rng(0).integers(0, n, (BOOTSTRAP, n))
    xs, ys = x[idx], y[idx]
    po = (xs == ys).mean(1)
    pa, pb = xs.mean(1), ys.mean(1)
    pe = pa * pb + (1 - pa) * (1 - pb)
    ok = pe < 1 - 1e-12
    if ok.sum() < BOOTSTRAP / 2:
        return None, None
    ks = (po[ok] - pe[ok]) / (1 - pe[ok])
    return float(np.percentile(ks, 2.5)), float(np.percentile(ks, 97.5))


def agreement(metric: Sequence[int], people: Sequence[int]) -> dict[str, Any]:
    from ladder.stats import wilson

    n = len(metric)
    agree = sum(x == y for x, y in zip(metric, people))
    lo, hi = wilson(agree, n)
    k_lo, k_hi = kappa_ci(metric, people)
    return {"agreement": agree / n, "agreement_ci_low": lo, "agreement_ci_high": hi,
            "kappa": kappa(metric, people), "kappa_ci_low": k_lo, "kappa_ci_high": k_hi, "labelled_n": n}


FIELDS = ("agreement", "agreement_ci_low", "agreement_ci_high", "kappa", "kappa_ci_low", "kappa_ci_high", "labelled_n")


def metric_specs(config: Mapping[str, Any]) -> list[tuple[str | None, Any]]:
    """(name, validated config) of the experiment's metrics from its resolved YAML: the primary first
    (name None), then the further ones (`metrics:`)."""
    from ladder.scorers import parse_scorer

    if config.get("metrics"):
        items = list(config["metrics"].items())
        return [(None, parse_scorer(items[0][1])), *((k, parse_scorer(v)) for k, v in items[1:])]
    spec = config.get("metric")
    return [(None, parse_scorer(spec))] if spec else []


def _judged(spec: Any) -> bool:
    from ladder.config.judged import compares_with_target

    try:
        return not compares_with_target(spec)
    except LadderError:  # a plugin metric that no longer imports: not ours to judge
        return False


def attach(ev: Evidence) -> None:
    """Each row's agreement with people's labels (and, for a judged metric beside a gold one, with
    the gold verdicts) as `extra.agreement` ({"": primary's, name: a further metric's}), and the
    guards that go with it. Recomputed on every load: labels are added after a run."""
    try:
        specs = metric_specs(ev.config)
    except Exception:  # an experiment.yaml from an older ladder: nothing to say about agreement
        return
    if not specs:
        return
    labels = read_labels(ev.folder) if (ev.folder / LABELS).exists() else {}
    (_, primary), *others = specs
    from ladder.metrics.pairwise import pairwise_of

    for r in ev.results:
        r.guards = [g for g in r.guards if g.name not in ("metric_unvalidated", "metric_disagrees", "labels_ignored")]
        r.extra.agreement = None
        from ladder.evidence import stage_class

        cls = stage_class(r.type)
        if cls is not None and not cls.evaluates_test_subsample:
            continue
        judged = [(name, spec) for name, spec in [(None, primary), *others] if _judged(spec)]
        if not judged:
            continue
        recs = outputs(ev.folder, r)
        mine = {(i, d): v for (s, i, d), v in labels.items() if s == r.stage}
        matched = {i: mine[(i, digest(rec["output"]))] for i, rec in recs.items() if (i, digest(rec["output"])) in mine}
        outside = sum(i not in recs for i, _ in mine)
        stale = len(mine) - outside - len(matched)
        out: dict[str, Any] = {}
        for name, spec in judged:
            threshold = (lambda v: v > 0.5) if pairwise_of(spec) else (lambda v: v >= 0.5)
            score = (lambda rec: rec.get("score")) if name is None else \
                (lambda rec, name=name: (rec.get("metrics") or {}).get(name))
            against, basis = matched, "people's labels"
            if not against and name is not None and not _judged(primary):
                # A judge beside a gold metric: the gold verdicts are labels that cost nothing.
                against = {i: int(rec["score"] >= 0.5) for i, rec in recs.items()}
                basis = "the gold metric's verdicts"
            pairs = [(int(threshold(score(recs[i]))), v) for i, v in against.items() if score(recs[i]) is not None]
            label = ev_label(name, r)
            if not pairs:
                if name is None and not (pairwise_of(spec) == r.stage):
                    r.guards.append(Guard("metric_unvalidated", "info",
                                          f"no person has labelled any of this row's outputs, so the {label} metric "
                                          f"is an unchecked proxy: `ladder label {ev.folder} --stage {r.stage} --n 50` "
                                          f"records verdicts, and the table then shows its agreement (κ)"))
                continue
            got = agreement([m for m, _ in pairs], [p for _, p in pairs])
            got["basis"] = basis
            out[name or ""] = got
            hi = got["kappa_ci_high"]
            if hi is not None and hi < DISAGREES_BELOW:
                r.guards.append(Guard("metric_disagrees", "warn",
                                      f"the {label} metric agrees with {basis} no better than κ = "
                                      f"{got['kappa']:.2f} [{got['kappa_ci_low']:.2f}, {hi:.2f}] on {got['labelled_n']} "
                                      f"labelled outputs (agreement {got['agreement']:.0%}): it does not measure what "
                                      f"they judge. Read the outputs where they disagree, then sharpen the criteria "
                                      f"or instruction, or use a stronger judge model, before trusting this row's "
                                      f"number", hi))
        if outside or stale:
            r.guards.append(Guard("labels_ignored", "warn",
                                  f"{outside + stale} labels of this stage were ignored: {outside} name examples outside "
                                  f"this row's scored subsample, {stale} an earlier output of an example (the text "
                                  f"changed since it was labelled)", float(outside + stale)))
        if out:
            r.extra.agreement = out


def ev_label(name: str | None, r: StageResult) -> str:
    return name or r.metric_name


def agreement_cells(r: StageResult) -> dict[str, Any]:
    """summary.csv cells: agreement… for the row's metric, <name>_agreement… for a further one."""
    out: dict[str, Any] = {}
    for name, got in (r.extra.agreement or {}).items():
        prefix = f"{name}_" if name else ""
        out.update({prefix + k: ("" if got[k] is None else round(got[k], 6) if isinstance(got[k], float) else got[k])
                    for k in FIELDS})
    return out


def agreement_columns(results: Iterable[StageResult]) -> list[str]:
    names = dict.fromkeys(n for r in results for n in (r.extra.agreement or {}))
    return [f"{n}_{k}" if n else k for n in names for k in FIELDS]


def agreement_lines(results: Iterable[StageResult]) -> list[str]:
    """One line per row and judged metric with labels: what summary.md, the terminal and the report
    print under the table."""
    out = []
    for r in results:
        for name, got in (r.extra.agreement or {}).items():
            k = "κ undefined (one class only)" if got["kappa"] is None else f"κ {got['kappa']:.2f}" + (
                f" [{got['kappa_ci_low']:.2f}, {got['kappa_ci_high']:.2f}]" if got["kappa_ci_low"] is not None else "")
            out.append(f"{r.stage} · {name or r.metric_name} vs {got.get('basis', 'labels')}: agreement "
                       f"{got['agreement']:.0%} [{got['agreement_ci_low']:.0%}, {got['agreement_ci_high']:.0%}], {k}, "
                       f"n={got['labelled_n']} labelled")
    return out


def agreement_markdown(results: Iterable[StageResult]) -> str:
    lines = agreement_lines(results)
    return "" if not lines else "\nAgreement of the judged metrics (docs/judges.md):\n" + "".join(
        f"- {line}\n" for line in lines)
