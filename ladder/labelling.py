"""`ladder label`: a person's verdicts on a stage's outputs, recorded in results/<exp>/labels.jsonl.

Asked one output at a time in a terminal, or read from a file (`--from FILE`: JSONL `{id, label}` or a
CSV with columns id,label; `--from -`: stdin). What the verdicts are for — the judged metric's
agreement with them, and its guards — is ladder/labels.py; this module writes them and then the
experiment's summary, so the table shows the agreement at once.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

from ladder.errors import ConfigError, LadderError
from ladder.evidence import Evidence
from ladder.labels import LABELS, attach, digest, metric_specs, outputs, read_labels, verdict
from ladder.store import atomic_write, read_jsonl
from ladder.table import write_summary
from ladder.types import StageResult



def label(folder: Path, stage: str, n: int = 50, source: str | None = None, seed: int = 0,
          ask: Callable[[str], str] | None = None, say: Callable[[str], None] = print) -> dict[str, int]:
    """Record verdicts on `stage`'s outputs in labels.jsonl: from `source` (a JSONL or CSV file of
    id,label[,digest]; "-" for stdin), else asked one output at a time (`ask`, default input()) for
    up to `n` outputs not labelled yet, in an order drawn with `seed`. Returns counts."""
    ev = Evidence.load(folder)
    if not ev.results:
        raise LadderError("no finished stage here", where=str(folder),
                          fix="pass an experiment folder such as results/judged, after `ladder run`")
    row = next((r for r in ev.results if r.stage == stage), None)
    if row is None:
        raise LadderError(f"no stage '{stage}' in this experiment's table", where=str(folder), field="--stage",
                          fix=f"use one of: {', '.join(r.stage for r in ev.results)}")
    recs = outputs(folder, row)
    existing = read_labels(folder) if (folder / LABELS).exists() else {}
    if source is not None:
        rows = _read_source(source)
        new, outside, stale = [], 0, 0
        for where, item in rows:
            i = str(item["id"])
            if i not in recs:
                outside += 1
                continue
            d = digest(recs[i]["output"])
            if item.get("digest") and str(item["digest"]) != d:
                stale += 1
                continue
            new.append({"stage": stage, "id": i, "digest": d, "label": item["label"]})
        if outside or stale:
            say(f"warn labels_ignored: {outside + stale} of the {len(rows)} verdicts were ignored: {outside} name "
                f"examples '{stage}' did not score (outside the subsample), {stale} an output that has changed "
                f"since (its digest differs)")
        if rows and not new:
            raise LadderError(f"none of the {len(rows)} verdicts in {source} is for an output of stage '{stage}'",
                              where=source, fix=f"give ids of its scored examples (see {stage}/…/samples.jsonl)")
    else:
        new = _ask(folder, ev, row, recs, existing, n, seed, ask or _input_or_refuse(), say)
        outside = stale = 0
    if new:
        lines = [json.dumps(d, ensure_ascii=False) for d in read_jsonl(folder / LABELS)] if existing else []
        lines += [json.dumps(d, ensure_ascii=False) for d in new]
        atomic_write(folder / LABELS, "".join(line + "\n" for line in lines))
        write_summary(folder, Evidence.load(folder).results)  # the agreement columns and guards
    done = Evidence.load(folder)
    attach(done)
    got = (next(r for r in done.results if r.stage == stage).extra.agreement or {}).get("")
    if got:
        k = "undefined" if got["kappa"] is None else f"{got['kappa']:.2f}"
        say(f"{stage}: agreement {got['agreement']:.0%}, κ {k} on {got['labelled_n']} labelled outputs")
    return {"recorded": len(new), "outside": outside, "stale": stale}


def _read_source(source: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, {id, label, digest?}) of each verdict in a JSONL or CSV file (or stdin); a bad one is
    a ConfigError naming its line: nothing is written."""
    text = sys.stdin.read() if source == "-" else _read(source)
    name = "<stdin>" if source == "-" else source
    out: list[tuple[str, dict[str, Any]]] = []
    if text.lstrip().startswith("{"):
        items = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"line {n} is not JSON ({exc.msg})", where=name,
                                      fix='write one {"id": ..., "label": "yes"} a line') from None
    else:
        items = [(n, r) for n, r in enumerate(csv.DictReader(io.StringIO(text)), 2)]
    for n, item in items:
        if not isinstance(item, dict) or "id" not in item or "label" not in item:
            raise ConfigError(f"line {n} has no `id` and `label`", where=name,
                              fix='write JSONL lines {"id": "test-3", "label": "yes"} or a CSV with columns id,label')
        v = verdict(item["label"])
        if v is None:
            raise ConfigError(f"line {n}: label {item['label']!r} is not a verdict", where=name, field="label",
                              fix="write yes or no (also y/n, 1/0, true/false, good/bad)")
        out.append((f"{name}:{n}", {**item, "label": v}))
    if not out:
        raise ConfigError("no verdicts in it", where=name, fix="write one id,label a line")
    return out


def _read(source: str) -> str:
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read it ({exc.strerror})", where=source, field="--from",
                          fix="give a JSONL or CSV file of id,label verdicts, or - for stdin") from None


def _input_or_refuse() -> Callable[[str], str]:
    if not sys.stdin.isatty():
        raise LadderError("`ladder label` asks for verdicts in a terminal, and stdin is not one", field="--from",
                          fix="give the verdicts as a file: --from labels.csv (columns id,label), or --from - to "
                              "read them from stdin")
    return input


def _ask(folder: Path, ev: Evidence, row: StageResult, recs: Mapping[str, dict[str, Any]],
         existing: Mapping[tuple[str, str, str], int], n: int, seed: int, ask: Callable[[str], str],
         say: Callable[[str], None]) -> list[dict[str, Any]]:
    from ladder.metrics.pairwise import pairwise_of, reference_outputs

    specs = metric_specs(ev.config)
    spec = specs[0][1] if specs else None
    against = pairwise_of(spec) if spec is not None else None
    reference: dict[str, str] = {}
    if against and against != row.stage:
        ref = next((r for r in ev.results if r.stage == against), None)
        if ref is not None:
            reference = reference_outputs(folder / ref.stage / ref.run_id / "samples.jsonl")
    todo = sorted(i for i, rec in recs.items() if (row.stage, i, digest(rec["output"])) not in existing)
    random.Random(seed).shuffle(todo)
    todo = todo[:n]
    criteria = getattr(spec, "criteria", None)
    question = (f"Is this output better than '{against}'s?" if reference else "Does this output meet the criteria?")
    say(f"Labelling {len(todo)} outputs of '{row.stage}'" + (f" — criteria: {criteria}" if criteria else ""))
    new = []
    for k, i in enumerate(todo, 1):
        rec = recs[i]
        user = next((m["content"] for m in reversed(rec.get("prompt") or []) if m.get("role") == "user"), "")
        say(f"\n[{k}/{len(todo)}] {i}\n--- prompt ---\n{user}\n--- output ---\n{rec['output']}")
        if i in reference:
            say(f"--- {against}'s output ---\n{reference[i]}")
        while True:
            answer = ask(f"{question} [y]es / [n]o / [s]kip / [q]uit: ").strip().lower()
            if answer in ("q", "quit"):
                return new
            if answer in ("s", "skip", ""):
                break
            v = verdict(answer)
            if v is not None:
                new.append({"stage": row.stage, "id": i, "digest": digest(rec["output"]), "label": v})
                break
    return new
