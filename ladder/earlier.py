"""An earlier stage's successes as data: few_shot's `shots_from:` and sft's `train_from:`.

`shots_from: {stage: zero_shot, min_score: 1}` draws each test example's shots from the outputs of an
earlier stage of this run that scored at least `min_score` — the "stochastic few-shot" of Perez et
al. 2022: the attacker's successful zero-shot cases shown to it again, a fresh seeded draw per
example, never the example's own. `train_from:` trains sft on the same successes: the named stage's
SFT export (best_of_n's `export:`, drawn from the train split) when it wrote one, else its own
outputs on the test examples (then the train_test_overlap guard says the row is contaminated).

The earlier stage's run id enters this stage's run id: run it differently and the shots change.
The config checks (the stage exists, answers the test examples and runs first) are
ladder/config/redteam.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ladder.errors import LadderError
from ladder.store import read_jsonl
from ladder.types import Message, Record

if TYPE_CHECKING:
    from ladder.config import FromStageOutputs

KEYS = ("shots_from", "train_from")
"""The stage keys naming an earlier stage's outputs."""


def outputs_from(stage: Any) -> tuple[str, FromStageOutputs] | None:
    """(key, spec) of the stage's `shots_from:` / `train_from:`, or None."""
    return next(((k, getattr(stage, k)) for k in KEYS if getattr(stage, k, None) is not None), None)


def unset_redteam_keys(stage: Any) -> set[str]:
    """The red-teaming keys a stage leaves unset (respondent, shots_from, train_from): left out of
    its run id, so adding them changed no finished result's folder. Set, they are in it."""
    return {k for k in ("respondent", *KEYS) if getattr(stage, k, None) is None}


def earlier_folders(plan: Any, stage: Any) -> dict[str, Path]:
    """{earlier stage name: its run folder in this run} for the stage's `shots_from:`/`train_from:`;
    {} when it names none. The earlier stage must have finished (in this run or an earlier one)."""
    got = outputs_from(stage)
    if got is None:
        return {}
    key, spec = got
    earlier = next(s for s in plan.experiment.stages if s.name == spec.stage)
    folder = plan.resolve(earlier).run_dir
    if not (folder / "metrics.json").exists():
        raise LadderError(f"stage '{stage.name}' takes its {key.split('_')[0]} from stage '{spec.stage}', which has not "
                          f"finished in this run or an earlier one of this config", field=f"stages.{stage.name}.{key}",
                          fix=f"run '{spec.stage}' first (drop --only, or include it)")
    return {spec.stage: folder}


def run_id_part(plan: Any, stage: Any) -> dict[str, Any]:
    """The earlier stage's run id, for this stage's run id (empty without shots_from/train_from)."""
    got = outputs_from(stage)
    if got is None:
        return {}
    earlier = next((s for s in plan.experiment.stages if s.name == got[1].stage), None)
    try:
        run_id = plan.resolve(earlier).run_id if earlier is not None else None
    except LadderError:  # its model is not trained yet (under `ladder check`)
        run_id = None
    return {"outputs_from": {got[1].stage: run_id}}


def successes(folder: Path, min_score: float) -> list[dict[str, Any]]:
    """The earlier stage's records (samples.jsonl lines) whose score reached min_score, each with
    `output`: the text its row scored (a selecting stage's selected sample)."""
    out = []
    for rec in read_jsonl(folder / "samples.jsonl"):
        if rec.get("error") or rec.get("score") is None or rec["score"] < min_score:
            continue
        out.append({**rec, "output": Record.from_dict(rec).output()})
    return out


def none_left(stage: str, key: str, spec: Any) -> LadderError:
    return LadderError(f"no output of stage '{spec.stage}' scored at least {spec.min_score:g}: stage '{stage}' has "
                       f"nothing to take its {key.split('_')[0]} from", field=f"stages.{stage}.{key}.min_score",
                       fix=f"lower min_score, or give '{spec.stage}' more examples (subsample.n) or samples")


def training_rows(folder: Path, spec: Any, stage: str) -> list[Any]:
    """The successes sft trains on (TrainRows): the stage's SFT export (rows whose selector score
    reached min_score) when it wrote one, else its successes on the test examples, their prompts as
    that stage recorded them."""
    from ladder.training.rows import TrainRow, read_sft_file

    export = folder / "sft.jsonl"
    if export.exists():
        scores = [r.get("score") for r in read_jsonl(export)]
        rows = [row for row, score in zip(read_sft_file(export), scores)
                if score is not None and score >= spec.min_score]
    else:
        rows = [TrainRow([Message(m["role"], m["content"]) for m in r["prompt"]], r["output"])
                for r in successes(folder, spec.min_score)]
    if not rows:
        raise none_left(stage, "train_from", spec)
    return rows
