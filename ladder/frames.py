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


SAMPLE_COLUMNS = ["example_id", "content", "stage", "variant", "run_id", "sample", "prompt", "completion", "score",
                  "finish_reason", "selected", "example_score", "target", "messages"]


def _pandas():
    try:
        import pandas
    except ImportError:
        raise LadderError("ladder.load needs pandas, which is not installed",
                          fix="pip install 'ladder[data]' (or pip install pandas)") from None
    return pandas


def load(folder: str | Path) -> Frames:
    """An experiment's results folder as DataFrames (`stages`, `samples`)."""
    from ladder.compare import samples_path
    from ladder.store import read_json, read_jsonl
    from ladder.table import read_summary
    from ladder.types import Record

    pd = _pandas()
    folder = Path(folder)
    if not (folder / "summary.csv").exists():
        raise LadderError("no summary.csv here", where=str(folder),
                          fix="pass an experiment folder such as results/quickstart, after `ladder run`")
    rows = read_summary(folder)
    # An empty cell is how summary.csv says "no value": NaN in the frame, and nothing else is (a
    # stage may be called "NA"), so numeric columns come out numeric.
    stages = pd.read_csv(folder / "summary.csv", keep_default_na=False, na_values=[""])
    manifest = read_json(folder / "manifest.json") if (folder / "manifest.json").exists() else {}
    sub = manifest.get("subsample") or {}
    content = dict(zip(map(str, sub.get("ids", [])), sub.get("content", [])))
    out: list[dict[str, Any]] = []
    for row in rows:
        variant = row.get("variant") or None
        for d in read_jsonl(samples_path(folder, row)):
            rec = Record.from_dict(d)
            if rec.error:
                continue
            prompt = rec.user_prompt()
            for i, s in enumerate(rec.samples):
                out.append({"example_id": str(rec.id), "content": content.get(str(rec.id)), "stage": row["stage"],
                            "variant": variant, "run_id": row["run_id"], "sample": i, "prompt": prompt,
                            "completion": s.get("text"), "score": s.get("score"),
                            "finish_reason": s.get("finish_reason"),
                            "selected": None if rec.selected is None else rec.selected == i,
                            "example_score": rec.score, "target": rec.target, "messages": rec.prompt})
    samples = pd.DataFrame(out, columns=SAMPLE_COLUMNS)
    return Frames(stages, samples)
