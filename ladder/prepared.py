"""An experiment made ready to run (`prepare`): task loaded, test subsample drawn, metric built,
each stage's model and generation resolved and checked, and each stage's run id (`PreparedRun._run_id`).

Apart from ladder/runner.py, which runs the stages in order: what decides a stage's folder lives
here, what happens in it there. ladder.runner re-exports `prepare` and `PreparedRun`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ladder.backends.base import BackendPool
from ladder.cache import Cache, cache_key
from ladder.digests import code_digest, path_digest
from ladder.earlier import earlier_folders, run_id_part as earlier_run_id, unset_redteam_keys
from ladder.config import Experiment, StageConfig, backend_config, nested_from_stage
from ladder.guards import empty_fields, subsample
from ladder.metrics import Metric, build_metric
from ladder.metrics.pairwise import bind, run_id_part as pairwise_run_id
from ladder.metrics.judged import build_task_metric, check_open_ended, is_scorer_type
from ladder.metrics.redteam import run_id_part as respondent_run_id, with_respondent
from ladder.reach import check, scorer_models
from ladder.errors import ConfigError, LadderError
from ladder.registry import STAGES
from ladder.resolved import ResolvedStage
from ladder.scorers.digests import scoring_digests
from ladder.stages import TRAIN_SPLIT, StageContext, stage_hook
from ladder.store import check_results_folder
from ladder.table import COLUMNS
from ladder.tasks import TaskLike, load_task
from ladder.types import Example, Guard, StageResult


@dataclass
class PreparedRun:
    """An experiment made ready to run: its task loaded, test subsample drawn, metric built, each
    stage's configured model and generation resolved, and the models checked; then, as stages
    finish, what they produced for later ones. Built by `prepare()` before anything is written."""

    experiment: Experiment
    task: TaskLike
    examples: list[Example]
    guards: list[Guard]
    metric: Metric | None
    """The task metric; None when it is a scorer (a judge...), built per stage by `context()`."""
    pool: BackendPool
    configured: dict[str, ResolvedStage]
    """Each stage as configured (stage name → its model with `from_stage` not yet replaced, and
    its generation), resolved once; `resolve()` completes it when the stage is about to run."""
    produced: dict[str, dict[str, Any]] = field(default_factory=dict)
    """What finished stages produced for later ones (stage name → {model: backend config keys,
    reward_model: ...}), for `from_stage`."""
    train_subsamples: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The training rows each finished training stage used (stage name → its `train_subsample`
    record: rows there were, rows used, seed, digest), for manifest.json."""
    _scorer_metric: tuple[Any, Metric, dict[str, Metric]] | None = field(default=None, repr=False)
    """(cache, metric, further metrics) built already: one judge for every stage of a run."""
    _digests: dict[Any, str] = field(default_factory=dict, repr=False)
    """Content digests already computed in this run (run ids are asked after every stage)."""

    def resolve(self, stage: StageConfig, planning: bool = False) -> ResolvedStage:
        """The stage with its model's `from_stage` replaced by what that stage produced, and its run
        id and folder. When planning (`ladder check`), a model not produced yet is stood in for by
        the configured model, and there is no run id."""
        configured = self.configured.get(stage.name)
        if configured is None or configured.config != stage:  # a variant of a stage (tests, what-ifs)
            configured = configure(self.experiment, stage)
        model = configured.model
        if configured.from_stage is not None:
            made = self.produced.get(configured.from_stage, {}).get("model")
            if made is not None:
                model = backend_config(model.model_dump(), {**made, "from_stage": None})
            elif planning:
                model = model.model_copy(update={"from_stage": None})
            else:
                raise LadderError(f"stage '{stage.name}' uses the model of stage '{configured.from_stage}', "
                                  f"which has not produced one in this run or an earlier one of this config",
                                  field=f"stages.{stage.name}.model.from_stage",
                                  fix=f"run '{configured.from_stage}' first (drop --only, or include it)")
        resolved = replace(configured, model=model)
        if planning:
            return resolved
        run_id = self._run_id(resolved)
        return replace(resolved, run_id=run_id,
                       run_dir=self.experiment.results_path / stage.name / run_id)

    def record(self, stage: StageConfig, result: StageResult) -> None:
        self.produced[stage.name] = result.products.to_dict()
        if result.extra.train_subsample:
            self.train_subsamples[stage.name] = result.extra.train_subsample

    def _run_id(self, resolved: ResolvedStage) -> str:
        stage = resolved.config
        payload = {
            # `skip` only says whether the stage runs, not what it outputs, `report_to` (training
            # stages) only where their logs also go and `save_every_minutes` only when checkpoints
            # are written: leave them out of the id.
            "stage": stage.model_dump(mode="json", exclude={"skip", "report_to", "save_every_minutes",
                                                            *unset_redteam_keys(stage)}),
            "model": self.pool.get(resolved.model).fingerprint,
            "model_config": resolved.model.model_dump(mode="json"),
            "generation": resolved.generation.model_dump(mode="json"),
            "task": self.experiment.config.task.model_dump(mode="json"),
            "metric": resolved.metric.model_dump(mode="json"),
            # Further metrics (`metrics:`) are columns of the row: adding one gives a new folder.
            **({"metrics": {k: v.model_dump(mode="json") for k, v in self.experiment.extra_metrics.items()}}
               if self.experiment.extra_metrics else {}),
            # The code that scores, by content: a python metric's (or scorer's) file, ladder's own
            # metric and scorer modules. Edit one and the stage is re-scored in a new folder.
            "scoring_code": {**scoring_digests(resolved.metric, stage),
                             **{f"metrics.{k}": scoring_digests(v, None)["metric"]
                                for k, v in self.experiment.extra_metrics.items()}},
            # Contents, not just ids (`test-3` is a row position): edit a gold answer in place and
            # every stage gets a new folder, so its scores are recomputed (generations still come
            # from the model-call cache when the prompts did not change).
            "examples": self._test_digest(),
            "inputs": self.inputs(stage),
            # A scorer may name an earlier stage's product (`pm` with `from_stage:`): retraining that
            # stage differently must give this one a new folder too.
            "upstream": {name: self.produced.get(name)
                         for _, name in nested_from_stage(stage.model_dump(mode="json"))},
            **pairwise_run_id(self, stage),  # a pairwise judge's reference (absent otherwise)
            # A respondent (red-teaming's target) and an earlier stage's outputs (shots_from) decide
            # the stage's scores and prompts: absent otherwise.
            **respondent_run_id(self.experiment, stage, lambda m: self.pool.get(m).fingerprint, code_digest),
            **earlier_run_id(self, stage),
        }
        return cache_key(payload)[:12]

    def _test_digest(self) -> str:
        if "test" not in self._digests:
            self._digests["test"] = cache_key({"examples": [ex.fingerprint for ex in self.examples]})
        return self._digests["test"]

    def inputs(self, stage: StageConfig) -> dict[str, str]:
        """Content digests of what the stage reads beyond the test subsample (`Stage.reads`): the
        train split as loaded, data files and folders byte for byte."""
        out = {}
        for name in STAGES.get(stage.type).reads(stage):
            if name == TRAIN_SPLIT:
                if TRAIN_SPLIT not in self._digests:
                    self._digests[TRAIN_SPLIT] = cache_key(
                        {"examples": [ex.fingerprint for ex in self.task.examples("train")]})
                out["train split"] = self._digests[TRAIN_SPLIT]
            else:
                out[name] = self._path_digest(self.experiment.path(name))
        return out

    def _path_digest(self, path: Path) -> str:
        """sha256 of a file's bytes, of a folder's files (names and bytes, nested ones too), or
        "missing" (a file an earlier stage of this run writes: the id is asked again once that
        stage has run)."""
        try:
            return path_digest(path)
        except OSError:
            return "missing"

    def context(self, resolved: ResolvedStage, cache: Cache | None) -> StageContext:
        ctx = StageContext(experiment=self.experiment, stage=resolved.config, task=self.task,
                           examples=self.examples, metric=self.metric, backend=self.pool.get(resolved.model),
                           gen=resolved.generation, cache=cache, run_dir=resolved.run_dir,
                           run_id=resolved.run_id, pool=self.pool, produced=self.produced,
                           resolved=resolved)
        exp = self.experiment
        if (self.metric is None or exp.extra_metrics) and not STAGES.get(resolved.config.type).produces_reward_model:
            # A scorer as the task metric needs the context (backend pool, cache). A reward_model
            # stage scores pairs, not the task, and may be what trains the metric's PM.
            if self._scorer_metric is None or self._scorer_metric[0] is not cache:
                extra = {name: build_task_metric(spec, ctx, field=f"metrics.{name}")
                         for name, spec in exp.extra_metrics.items()}
                metric = self.metric or build_task_metric(exp.metric, ctx)
                self._scorer_metric = (cache, metric, extra)
            _, ctx.metric, ctx.extra_metrics = self._scorer_metric
            # A pairwise judge reads the reference stage's outputs: bound per stage.
            ctx.metric, *more = bind(self, resolved, [ctx.metric, *ctx.extra_metrics.values()])
            ctx.extra_metrics = dict(zip(ctx.extra_metrics, more))
        with_respondent(ctx)  # a second model in the loop: the metrics score its reply
        if resolved.run_dir is not None:  # shots_from / train_from: the earlier stage's folder
            ctx.earlier = earlier_folders(self, resolved.config)
        return ctx


PRODUCTS = ("model", "reward_model")
"""Keys of a StageResult's `extra` that later stages can use by naming the stage (`from_stage`)."""


def configure(exp: Experiment, stage: StageConfig) -> ResolvedStage:
    """The stage as configured: its model (`from_stage` still named) and generation, merged once."""
    model = exp.stage_model(stage)
    return ResolvedStage(stage, model, model.from_stage, exp.stage_generation(stage), exp.metric)


def prepare(exp: Experiment, planning: bool = False) -> PreparedRun:
    """The experiment made ready to run, every model it calls checked (key, SDK, generation
    settings). `planning` (`ladder check`): an API key missing from the environment is a
    `missing_key` warning instead of the error `ladder run` stops on — nothing billed is sent."""
    cfg = exp.config
    where = str(exp.source) if exp.source else "<config>"
    check_results_folder(exp.results_path, where)
    task = load_task(cfg.task, exp.base_dir, cfg.seed, where)
    examples, guards = subsample(task.examples("test"), cfg.subsample.n, exp.seed_for(cfg.subsample.seed),
                                 cfg.guards)
    check_open_ended(exp, task)
    taken = [n for n in exp.extra_metrics if n in COLUMNS]
    if taken:  # its summary.csv columns would overwrite the table's own
        raise ConfigError(f"metric name '{taken[0]}' is a summary.csv column already", where=where,
                          field=f"metrics.{taken[0]}", fix="give it another name in the `metrics:` mapping")
    if isinstance(getattr(cfg.task, "template", None), str):
        guards += empty_fields(examples, cfg.task.template)
    metric = None if is_scorer_type(exp.metric.type) else build_metric(exp.metric)
    pool = BackendPool(planning=planning)
    for stage in exp.stages:
        if not stage.skip:
            # The data a stage needs beyond the test split (train shots, YAML shots): checked now, so a
            # bad one stops the run before the results folder is touched and before any model loads.
            stage_hook(stage, "checked its inputs", lambda s=stage: STAGES.get(s.type).check_inputs(s, task), exp.source)
    configured = {}
    for stage in exp.stages:
        resolved = configured[stage.name] = configure(exp, stage)
        if resolved.from_stage is None and not stage.skip:  # a model still to be trained cannot be checked yet
            pool.get(resolved.model).preflight()
            pool.get(resolved.model).check_generation(resolved.generation)
        if not stage.skip:  # a judge's own model (scorer / reward / metric), named by its own field
            for prefix, model in scorer_models(exp, stage):
                check(prefix, pool.get(model).preflight)
    return PreparedRun(exp, task, examples, guards + missing_keys(pool), metric, pool, configured)


def missing_keys(pool: BackendPool) -> list[Guard]:
    """One `missing_key` warning per environment variable a planning pool's models found empty."""
    missing: dict[str, list[str]] = {}
    for backend in pool.instances.values():
        if backend.missing_key:
            missing.setdefault(backend.missing_key, []).append(backend.config.name)
    return [Guard("missing_key", "warn", f"{env} is not set (the key of {', '.join(dict.fromkeys(names))}): the plan "
                  f"is counted and priced without it, but `ladder run` stops until you export {env}=...")
            for env, names in missing.items()]
