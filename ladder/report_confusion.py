"""The report's confusion matrices: for a K-way task, one per stage — gold answer × the stage's
answer, with the answers that were none of the choices in their own column ("unparsed").

The answer is the one the stage kept and scored, as the sample browser shows it
(report_samples.answer_of): best_of_n's voted or selected answer, else the kept sample's
extraction. Examples with no score (failed after retries) are not in n and not in the matrix, so
each matrix's total is the row's n and its diagonal over n is the row's value for a 0/1 metric.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import Any

from ladder.evidence import Evidence
from ladder.store import read_jsonl
from ladder.types import Record

UNPARSED = "unparsed"
MAX_LABELS = 20
"""Beyond this many distinct gold answers a matrix is unreadable (and the task hardly K-way)."""


def kept_answer(rec: Record) -> str | None:
    """The answer the record kept as one of the choices, or None when it named none of them."""
    if "answer" in rec.after:  # best_of_n: the voted / selected answer (None: no sample parsed)
        got = rec.after["answer"]
    else:
        if not rec.samples:
            return None
        k = rec.selected if isinstance(rec.selected, int) and rec.selected < len(rec.samples) else 0
        got = rec.samples[k].get("extracted")
    return None if got is None else str(got).strip()


def confusion(path: Path) -> Counter[tuple[str, str]]:
    """(gold, answer) → count over a stage's scored records; answer is UNPARSED when the kept
    answer was none of the choices."""
    counts: Counter[tuple[str, str]] = Counter()
    for d in read_jsonl(path):
        rec = Record.from_dict(d)
        if rec.error or rec.score is None:
            continue
        counts[(str(rec.target).strip(), kept_answer(rec) or UNPARSED)] += 1
    return counts


def _labels(counts: Counter[tuple[str, str]], choices: Any) -> list[str]:
    """The matrix's label order: the task's `choices` as written in the YAML when they cover every
    label seen, else the labels sorted."""
    seen = {g for g, _ in counts} | {a for _, a in counts if a != UNPARSED}
    if isinstance(choices, list) and seen <= {str(c) for c in choices}:
        return [str(c) for c in choices if str(c) in seen]
    return sorted(seen)


def confusion_html(ev: Evidence) -> str:
    """One matrix per K-way stage, side by side; '' when no stage is K-way."""
    choices = (ev.config.get("task") or {}).get("choices")
    parts = []
    for r in ev.results:
        if r.stats.chance is None:  # not a K-way metric (choice, choice_prob)
            continue
        path = Path(ev.folder) / r.stage / r.run_id / "samples.jsonl"
        counts = confusion(path) if path.exists() else Counter()
        if not counts:
            continue
        labels = _labels(counts, choices)
        golds = [g for g in labels if any(g == k[0] for k in counts)]
        if len(golds) > MAX_LABELS:
            parts.append(f"<div class='confusion'><h3>{_e(r.stage)}</h3><p>{len(golds)} distinct gold answers: "
                         f"too many for a matrix.</p></div>")
            continue
        parts.append(_matrix(r.stage + (" (oracle)" if r.oracle else ""), golds, labels, counts))
    if not parts:
        return ""
    return ("<p class='rule'>Rows: the gold answer; columns: the stage's answer (its kept or voted one); "
            "<i>unparsed</i>: none of the choices (scored 0). The diagonal is correct. Counts over the "
            "stage's scored examples (its n).</p><div class='confusions'>" + "".join(parts) + "</div>")


def _matrix(title: str, golds: list[str], labels: list[str], counts: Counter[tuple[str, str]]) -> str:
    cols = [*labels, UNPARSED]
    n = sum(counts.values())
    peak = max(counts.values())
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = []
    for g in golds:
        cells = []
        for a in cols:
            k = counts.get((g, a), 0)
            cls = "diag" if a == g else "unparsed" if a == UNPARSED else "off"
            # Shade by count so the mass is visible at a glance; the number is always written.
            alpha = 0 if not k else 0.12 + 0.6 * k / peak
            cells.append(f"<td class='{cls}' style='--a:{alpha:.2f}' data-gold='{_e(g)}' data-answer='{_e(a)}'>{k}</td>")
        body.append(f"<tr><th>{_e(g)}</th>{''.join(cells)}<td class='total'>{sum(counts.get((g, a), 0) for a in cols)}"
                    f"</td></tr>")
    return (f"<div class='confusion' data-stage='{_e(title)}'><h3>{_e(title)} <span class='rule'>n = {n}</span></h3>"
            f"<table class='confusion'><thead><tr><th>gold ↓ · answer →</th>{head}<th>total</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)
