"""`ladder.load("results/<exp>")`: an experiment's results as pandas DataFrames.

    import ladder
    res = ladder.load("results/quickstart")
    res.stages.plot.bar(x="stage", y="value"); res.samples.groupby("stage").score.mean()

`stages`: summary.csv, one row per stage (and variant, when the experiment has variants), every
column of the table — value, CI, n, paired differences with their CIs and MDEs, tokens, cost.
`samples`: one row per sample: example id, content digest (the key `ladder compare` pairs on),
stage, variant, run id, sample index, prompt (the last user turn; `messages` holds the whole
prompt), completion, the sample's score, finish reason, whether the stage selected it (best_of_n),
the example's score (what the stage metric averages) and target. Failed records are left out, as
they are from n. pandas is an optional extra: pip install 'ladder[data]'.

(Not `ladder/load.py`: importing a submodule named `load` would set `ladder.load` to the module.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from ladder.errors import LadderError


class Frames(NamedTuple):
    stages: Any
    """pandas.DataFrame: one row per stage (and variant)."""
    samples: Any
    """pandas.DataFrame: one row per sample."""


SAMPLE_COLUMNS = ["example_id", "content", "stage", "variant", "run_id", "sample", "prompt", "completion", "answer",
                  "score", "finish_reason", "selected", "kept", "example_score", "target", "messages", "fields"]
"""Then one column per data field of the example (its name; `field_<name>` where it would clash
with a column above)."""


def _pandas():
    try:
        import pandas
    except ImportError:
        raise LadderError("ladder.load needs pandas, which is not installed",
                          fix="pip install 'ladder[data]' (or pip install pandas)") from None
    return pandas


def load(folder: str | Path) -> Frames:
    """An experiment's results folder as DataFrames (`stages`, `samples`): a variants experiment's
    folder gives every variant (a `variant` column), one variant's folder its own rows with
    `variant` filled. Raises NothingMeasured when the folder holds no finished stage."""
    from ladder.errors import NothingMeasured
    from ladder.table import read_summary
    from ladder.variants_folder import combined_info, finished, variant_of

    pd = _pandas()
    folder = Path(folder)
    if not (folder / "summary.csv").exists():
        raise LadderError("no summary.csv here", where=str(folder),
                          fix="pass an experiment folder such as results/quickstart, after `ladder run`")
    rows = read_summary(folder)
    # An empty cell is how summary.csv says "no value": NaN in the frame, and nothing else is (a
    # stage may be called "NA"), so numeric columns come out numeric.
    stages = pd.read_csv(folder / "summary.csv", keep_default_na=False, na_values=[""])
    info = combined_info(folder)
    own = variant_of(folder)
    if own is not None and "variant" not in stages.columns:
        stages.insert(0, "variant", own)
    if info:  # rows of the combined table: each variant's samples under variants/<variant>/
        homes = {n: folder / "variants" / n for n in finished(folder, info[0])}
    else:
        homes = {own: folder}
    out: list[dict[str, Any]] = []
    for row in rows:
        variant = row.get("variant") or own
        home = homes.get(variant)
        if home is None:
            continue
        out += _samples(home, row, variant)
    if not rows or not out and not any((homes.get(r.get("variant") or own) or folder).joinpath(
            r["stage"], r["run_id"], "samples.jsonl").exists() for r in rows):
        raise NothingMeasured("no finished stage here (summary.csv lists none, or their samples.jsonl are gone)",
                              where=str(folder), fix="run the experiment first (`ladder run EXP.yaml`)")
    fields = list(dict.fromkeys(k for rec in out for k in rec.get("fields") or {}))
    columns = SAMPLE_COLUMNS + [_field_column(k) for k in fields]
    for rec in out:
        for k, v in (rec.get("fields") or {}).items():
            rec[_field_column(k)] = v
    return Frames(stages, pd.DataFrame(out, columns=columns))


def _field_column(name: str) -> str:
    return f"field_{name}" if name in SAMPLE_COLUMNS or name.startswith("field_") else name


def _examples(home: Path) -> dict[str, dict[str, Any]]:
    """Example id → its fields, from examples.jsonl (results written before it existed: none)."""
    from ladder.manifest import EXAMPLES
    from ladder.store import read_jsonl

    return {str(d["id"]): d.get("fields") or {} for d in read_jsonl(home / EXAMPLES)} \
        if (home / EXAMPLES).exists() else {}


def _samples(home: Path, row: dict[str, Any], variant: str | None) -> list[dict[str, Any]]:
    """One dict per sample of one stage row, whose run lives under `home`."""
    from ladder.store import read_json, read_jsonl
    from ladder.types import Record

    manifest = read_json(home / "manifest.json") if (home / "manifest.json").exists() else {}
    sub = manifest.get("subsample") or {}
    content = dict(zip(map(str, sub.get("ids", [])), sub.get("content", [])))
    fields = _examples(home)
    out = []
    for d in read_jsonl(home / row["stage"] / row["run_id"] / "samples.jsonl"):
        rec = Record.from_dict(d)
        if rec.error:
            continue
        prompt = rec.user_prompt()
        # The sample the stage kept for its number: best_of_n's selected one, else a one-sample
        # stage's only sample; a stage that votes over its samples (majority) kept none of them.
        keep = rec.selected if isinstance(rec.selected, int) else 0 if len(rec.samples) == 1 else None
        for i, s in enumerate(rec.samples):
            out.append({"example_id": str(rec.id), "content": content.get(str(rec.id)), "stage": row["stage"],
                        "variant": variant, "run_id": row["run_id"], "sample": i, "prompt": prompt,
                        "completion": s.get("text"), "answer": s.get("extracted"), "score": s.get("score"),
                        "finish_reason": s.get("finish_reason"),
                        "selected": None if rec.selected is None else rec.selected == i, "kept": keep == i,
                        "example_score": rec.score, "target": rec.target, "messages": rec.prompt,
                        "fields": fields.get(str(rec.id))})
    return out
