"""How much training a config implies, before it starts: optimizer steps, and a rough time.

The steps are exact (the same arithmetic the stages give trl). The time is not: it is a measured
rate of ladder-tiny on 2 CPU cores, scaled by the batch. For any other model it is only a floor —
a 0.5B-weight model trains hundreds of times slower on a CPU, and a GPU changes everything — so
`ladder check` says which rate it used and calls it rough. The point is to catch the config that
would train for an hour when the researcher expected a minute (SST-2's 67k train rows at batch
16 are 4,210 sft steps with `train_subsample: all`), not to schedule a cluster. The rows counted
are those the stage trains on: its `train_subsample` of them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from ladder.errors import LadderError
from ladder.types import Guard

SFT_SECONDS_PER_STEP = {True: 0.62, False: 0.54}
"""Seconds per sft step of ladder-tiny at batch 16 on 2 CPU cores, the whole stage (training,
checkpoints, the saved model, the final evaluation), with test curves (the default) and without:
the quickstart's sft took 77.2 s for 125 steps on an idle machine (2026-11-28), and bench_sft
measured the stage 13% shorter with `curves: false`. Longer rows cost more: on SST-2 (4,000 rows,
250 steps) the same stage took 245 s, about 1 s/step — so the estimate is a floor."""
RL_SECONDS_PER_ROLLOUT = 127.0 / (50 * 8 * 8)
"""Seconds per rollout of ladder-tiny's GRPO on 2 CPU cores, the whole stage: the quickstart rung,
50 steps × 8 prompts × 8 generations, best-of-N and the final evaluation included, in 127 s on an
idle machine (2026-11-28)."""
LONG_STEPS = 1000
"""More optimizer steps than this is flagged before the stage starts: a first look rarely needs
them, and at ladder-tiny's rate it is already several minutes."""
TINY = "ladder-tiny"


def training_plan(stage: Any, task: Any, model: Any, base_dir: Path | None = None) -> dict[str, Any]:
    """What `ladder check` adds to a stage's entry: {"training": {steps, seconds, text, warning?}};
    {} for a stage that does not train. `model` is the stage's BackendConfig."""
    est = training_estimate(stage, task, model, base_dir)
    if est is None:
        return {}
    guard = long_training_guard(stage.name, est)
    return {"training": {**est, "text": describe(stage.name, est), **({"warning": guard.message} if guard else {})}}


def long_training(plan: Any, stages: list[Any], finished: Callable[[Any, Any], Any] | None = None) -> list[Guard]:
    """The long_training warnings for the stages a run is about to train (said at run start);
    `finished(plan, stage)`, when given, is the stage's earlier result: a finished stage trains nothing."""
    guards = []
    for stage in stages:
        est = training_estimate(stage, plan.task, plan.resolve(stage, planning=True).model, plan.experiment.base_dir)
        guard = long_training_guard(stage.name, est) if est else None
        if guard and (finished is None or finished(plan, stage) is None):
            guards.append(guard)
    return guards


def training_estimate(stage: Any, task: Any, model: Any, base_dir: Path | None = None) -> dict[str, Any] | None:
    """What the stage's class says its training will take (Stage.training_estimate): {steps, how,
    seconds, basis, long}; None for a stage that trains nothing."""
    from ladder.registry import STAGES

    return STAGES.get(stage.type).training_estimate(stage, task, model, base_dir)


def sft_estimate(stage: Any, task: Any, model: Any, base_dir: Path | None = None) -> dict[str, Any]:
    """An sft stage's {steps, how, seconds, basis, long} (steps None when they depend on a data
    file an earlier stage writes; seconds None on OpenAI's servers)."""
    openai = stage.route == "openai" or (stage.route == "auto" and model.backend == "openai")
    total = _rows(stage, task, base_dir)
    rows = _subsampled(stage, total)
    batch = stage.batch_size or 16
    epochs = stage.epochs or 1.0
    if openai:
        return {"steps": None, "rows": rows, "how": _of(rows, total) if rows is not None else str(stage.data),
                "seconds": None, "basis": "on OpenAI's fine-tuning API, which decides the steps and the time",
                "long": False}
    per_step = batch * stage.gradient_accumulation_steps
    steps = stage.max_steps or (None if rows is None else max(1, math.ceil(math.ceil(rows / per_step) * epochs)))
    how = (f"max_steps {stage.max_steps}" if stage.max_steps else
           f"{stage.data} is written by an earlier stage: its rows decide the steps" if rows is None and stage.data
           else f"the successes of stage '{stage.train_from.stage}' decide the steps" if rows is None else
           f"{_of(rows, total)} ÷ batch {per_step} × {epochs:g} epoch{'s' if epochs != 1 else ''}")
    rate = SFT_SECONDS_PER_STEP[bool(stage.curves)] * per_step / 16
    basis = f"{rate:.2f} s/step: ladder-tiny on 2 CPU cores" + ("" if stage.curves else ", curves off")
    return _timed(steps, how, rate, basis, model)


def rl_estimate(stage: Any, task: Any, model: Any, base_dir: Path | None = None) -> dict[str, Any]:
    """An rl stage's {steps, how, seconds, basis, long}: steps × prompts_per_step × generations rollouts."""
    steps = stage.steps
    rollouts = steps * stage.prompts_per_step * stage.generations
    how = f"{stage.prompts_per_step} prompts × {stage.generations} generations a step: {rollouts:,} rollouts"
    try:
        total = _rows(stage, task, base_dir)
    except LadderError:  # no train split: the stage says so when it runs
        total = None
    used = _subsampled(stage, total)
    if used != total:
        how += f"; prompts from {_of(used, total, 'train prompts')}"
    rate = rollouts / steps * RL_SECONDS_PER_ROLLOUT
    basis = f"{rate:.2f} s/step: ladder-tiny's GRPO on 2 CPU cores"
    return _timed(steps, how, rate, basis, model)


def _timed(steps: int | None, how: str, rate: float, basis: str, model: Any) -> dict[str, Any]:
    """The estimate's time at `rate` seconds a step, said as a floor for a model larger than ladder-tiny."""
    name = str(getattr(model, "name", ""))
    tiny = name == TINY or Path(name).name == TINY
    seconds = None if steps is None else steps * rate
    if not tiny and seconds is not None:
        basis += f"; {name or 'this model'} is larger: a floor, likely far more on a CPU"
    return {"steps": steps, "how": how, "seconds": seconds, "basis": basis, "tiny": tiny,
            "long": steps is not None and steps > LONG_STEPS}


def describe(stage_name: str, est: dict[str, Any]) -> str:
    """'sft: 250 training steps (train_subsample: 4,000 of 67,349 rows ÷ batch 16 × 1 epoch), ≈ 2 min
    (rough: 0.62 s/step: …)'"""
    steps = "training" if est["steps"] is None else f"{est['steps']:,} training steps"
    time = "" if est["seconds"] is None else \
        f", ≈ {duration(est['seconds'])}" + ("" if est.get("tiny") else " or more")
    return f"{stage_name}: {steps} ({est['how']}){time} (rough: {est['basis']})"


def long_training_guard(stage_name: str, est: dict[str, Any]) -> Guard | None:
    """A warning for a stage that trains more than LONG_STEPS steps, said before it starts."""
    if not est.get("long"):
        return None
    time = f" (≈ {duration(est['seconds'])} at ladder-tiny's CPU rate, more for a larger model)" \
        if est.get("seconds") is not None else ""
    return Guard("long_training", "warn",
                 f"stage {stage_name} trains {est['steps']:,} steps ({est['how']}){time}: for a first look set "
                 f"max_steps (e.g. 500) or fewer epochs, or a smaller train_subsample", float(est["steps"]))


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _subsampled(stage: Any, rows: int | None) -> int | None:
    """The rows a training stage uses of `rows`: its `train_subsample` of them."""
    n = getattr(stage, "train_subsample", "all")
    return rows if rows is None or n == "all" else min(rows, n)


def _of(used: int, total: int | None, what: str = "rows") -> str:
    """'train_subsample: 4,000 of 67,349 rows' when the subsample leaves rows out, else '2,000 rows'."""
    return f"{used:,} {what}" if total is None or used == total else f"train_subsample: {used:,} of {total:,} {what}"


def _rows(stage: Any, task: Any, base_dir: Path | None) -> int | None:
    if getattr(stage, "train_from", None) is not None:  # an earlier stage's successes: known once it ran
        return None
    data = getattr(stage, "data", None)
    if data is None:
        return len(task.examples("train"))
    path = Path(data) if Path(data).is_absolute() or base_dir is None else base_dir / data
    if not path.is_file():  # written by an earlier stage of the run (best_of_n's export)
        return None
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())

