"""Stages (the rungs) and the evaluation loop the prompting rungs share.

A stage turns a StageContext into a StageResult. Prompting stages only decide *which prompt* each
test example gets; `evaluate()` does the rest — cached batched generation, scoring, append-only
samples.jsonl with resume (by the prompt's content), aggregation with CIs and the guards. What
a stage is given is in context.py, how its records are scored in records.py, and the primitives
of a stage that asks more than once in passes.py.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Callable, Literal, NamedTuple, Sequence, TypeVar

from ladder.backends.base import generate
from ladder.config import StageConfig
from ladder.errors import ConfigError, LadderError
from ladder.guards import choice_baselines, stop_guard, stop_hit_rate
from ladder.metrics.judged import judged_guards, judged_stats
from ladder.progress import console, progress_bar
from ladder.result_sections import Extra, RecordsDigest, Stats
from ladder.stages.context import Pass, Plan, Prompt, StageContext  # noqa: F401 - ladder.stages' public names
from ladder.stages.records import metric_records, probability_scores, prompt_key, record_key, write_records  # noqa: F401
from ladder.stats import mean_ci
from ladder.store import JsonlWriter, read_jsonl, records_digest
from ladder.tasks import TaskLike
from ladder.types import Guard, Record, Sample, StageResult


TRAIN_SPLIT = ":train:"
"""What `Stage.reads` returns for the task's train split (any other entry is a file path)."""

PROBABILITY_BATCH = 64
"""Prompts recorded at a time when the metric reads probabilities (one batched forward pass)."""

SCORE_BATCH = 256
"""Prompts recorded at a time when the metric runs a model (a judge: one concurrent batch of calls)."""


Family = Literal["prompting", "sampling", "training"]
FAMILIES: tuple[Family, ...] = ("prompting", "sampling", "training")


class Stage:
    """The base of every stage (rung). Everything a stage may declare is here, with its default:
    a subclass overrides only what differs. The config check (`ladder check`), the runner, the
    table and the next-step advice read these, never a stage's type name."""

    Config: type[StageConfig] = StageConfig
    """The pydantic model of the stage's YAML entry (its `type:` is a Literal of the stage's name)."""
    family: Family = "prompting"
    """What kind of rung it is, for the table's reference row and the next-step advice:
    "prompting" (one greedy answer from a prompt: zero_shot, few_shot; the Δ zero_shot column is
    measured against the first prompting stage), "sampling" (several samples, one selected:
    best_of_n; advice: distil it into an sft stage) or "training" (changes weights: sft, rl,
    reward_model)."""
    produces_model = False
    """True when later stages can evaluate the model it trains with `model: {from_stage: <it>}`:
    the result's `products.model` holds the backend config keys of that model (sft, rl)."""
    produces_reward_model = False
    """True when a scorer (pm) can name it with `from_stage:`: `products.reward_model` holds the
    trained reward model (reward_model)."""
    trains_on_reward = False
    """True for a training stage that optimises a reward (rl), whose reward is `selects_by`: the
    advice then holds it against best-of-N with that reward, which needs no training, and its model
    is an RL policy (token probabilities not calibrated: probability metrics on it are refused).
    False: it learns by imitation (sft)."""
    advice_if_worse = ("read a few of its prompts in samples.jsonl: what it adds to the prompt may be "
                       "confusing the model.")
    """The next step `ladder` suggests when this prompting stage scores clearly below the reference
    prompting stage (zero_shot)."""
    evaluates_test_subsample = True
    """False for a stage whose n is not the task's test subsample (reward_model: held-out pairs),
    so the subsample's guards (e.g. "too few examples") are not its own."""
    TRAIN_SPLIT = TRAIN_SPLIT

    def __init__(self, config: StageConfig):
        self.config = config

    @staticmethod
    def check_inputs(cfg: StageConfig, task: TaskLike) -> None:
        """Check the data the stage needs beyond the test split (train shots, files its config
        names) and raise a ConfigError naming the field and the fix when it is unusable. The
        runner calls it before anything is written under results/. Default: nothing to check."""

    @staticmethod
    def check_metric(cfg: StageConfig, metric_cls: type) -> tuple[str, str, str] | None:
        """(stage key, message, fix) when the stage cannot work with the task metric's class (e.g.
        best_of_n's `select: majority` needs a metric that extracts an answer); None when it can.
        The config check asks before anything runs. Default: any metric works."""
        return None

    @classmethod
    def reads_test_targets(cls, config: StageConfig) -> bool:
        """Whether the stage reads the *test* examples' gold answers to pick its output: then its
        row is an oracle — an upper bound, marked in every table, never where a climb stops.
        Training on the train split's answers (sft, rl) does not count."""
        return False

    @classmethod
    def selects_by(cls, config: StageConfig) -> Any:
        """The scorer spec that picks this stage's output (best_of_n's scorer) or trains it (rl's
        reward), or None. When it is the task metric's own spec the row is marked
        `selected_by_metric`: optimistic, since the metric's own noise was selected for."""
        return None

    @classmethod
    def reads(cls, cfg: StageConfig) -> list[str]:
        """What the stage's output depends on beyond its config and the test subsample: TRAIN_SPLIT
        (the task's train split) and the data files or folders its config names (as written there,
        relative to the YAML file's folder). The runner hashes their *contents* into the run id, so
        editing one in place gives the stage a new run folder. A stage that reads more must say so."""
        return []

    def prompts(self, ctx: StageContext) -> tuple[list[Prompt], list[Guard]]:
        """The prompt of each test example (and guards about them); the default `run` evaluates
        them and the default `plan` counts them. A stage that implements `run` may leave it out."""
        raise NotImplementedError(f"stage '{ctx.stage.name}' gives no prompts(): it implements run()")

    def plan(self, ctx: StageContext) -> Plan:
        """What `ladder check` counts (examples, samples, tokens, cost) without calling a model:
        the passes of calls `run` will make. Default: one pass over `prompts()`, at the stage's
        generation settings. A stage that asks more than once (self-refine: answer, then revise)
        overrides it to list each pass; a stage that implements only `run` gets a plan of no
        pass, with a note saying so. `ctx.cache` is None here, and nothing may be generated."""
        if type(self).prompts is Stage.prompts:
            return Plan([], note=f"{type(self).__name__} implements only run(): ladder check cannot count its "
                                 f"model calls (a Stage.plan override would give them)")
        prompts, guards = self.prompts(ctx)
        return Plan([Pass(list(prompts))], list(guards))

    def scorer_estimate(self, ctx: StageContext, prompts: list[Prompt]) -> dict[str, Any] | None:
        """For `ladder check`: the calls of a model that scores the stage's samples besides the task
        metric (best_of_n's scorer, rl's reward), as `ladder.scorers.estimate_scorer` gives them —
        {scorer, calls, prompt_tokens, max_output_tokens, cost_usd}. `prompts`: the first pass's.
        Default None: the stage runs no scorer of its own (the task metric's judge is counted apart)."""
        return None

    @classmethod
    def fine_tunes_through_api(cls, cfg: StageConfig, model: Any) -> bool:
        """True when the stage trains its model through a provider's fine-tuning API (sft's openai
        route) for `model`, the stage's BackendConfig: `ladder check` then prices the job, and a
        stage that evaluates the fine-tuned model at the fine-tuned model's prices. Default False."""
        return False

    @classmethod
    def training_estimate(cls, cfg: StageConfig, task: TaskLike, model: Any,
                          base_dir: Path | None = None) -> dict[str, Any] | None:
        """For a stage that trains: {steps, how, seconds, basis, long} (ladder/estimate.py
        describes the keys; steps None when unknown before the run), which `ladder check` prints
        and `ladder run` warns about when long. `model`: the stage's BackendConfig. Default None:
        the stage trains nothing."""
        return None

    def run(self, ctx: StageContext) -> StageResult:
        prompts, guards = self.prompts(ctx)
        return evaluate(ctx, prompts, guards)


T = TypeVar("T")


def stage_hook(stage: StageConfig, what: str, ask: Callable[[], T], source: Path | None = None) -> T:
    """What a stage class's hook returns (`ask()`), called before the run (plan, check_inputs, ...);
    its exception (a plugin's bug) a LadderError naming the stage and the file of its class, so
    `ladder check` and `ladder run` say where to look instead of printing a traceback. `what`: what
    ladder was doing, as in "failed while ladder <what>"."""
    try:
        return ask()
    except LadderError:
        raise
    except Exception as exc:
        from ladder.registry import STAGES

        cls = STAGES.get(stage.type)
        where = inspect.getsourcefile(cls) or cls.__module__
        raise LadderError(f"stage '{stage.name}' (type {stage.type}: {cls.__qualname__} in {where}) failed while "
                          f"ladder {what}: {type(exc).__name__}: {exc}", where=str(source) if source else None,
                          fix="fix the stage's code there (ladder check calls plan(), prompts() and check_inputs() "
                              "with no model-call cache and generates nothing), or skip the stage (skip: <why>)"
                          ) from None


def local_hf(ctx: StageContext, what: str) -> Any:
    """The stage's backend, which must be a local hf model: training needs the weights."""
    from ladder.backends.hf import HFBackend

    if not isinstance(ctx.backend, HFBackend):
        raise ConfigError(f"{what} trains local hf models, not '{ctx.backend.config.backend}' ones",
                          field=f"stages.{ctx.stage.name}.model",
                          fix="give the stage an hf model: model: {backend: hf, name: ...}")
    return ctx.backend


def evaluate(ctx: StageContext, prompts: Sequence[Prompt], extra_guards: Sequence[Guard] = ()) -> StageResult:
    """Generate, score and record every prompt; resume from samples.jsonl when it exists."""
    started = time.perf_counter()
    # A probability metric scores a batch of prompts in one log-probability pass, so record many
    # at a time (the generations are cached; a kill loses only scoring work).
    # A metric that runs a model (a judge) scores many completions in one concurrent, cached call.
    batch = PROBABILITY_BATCH if ctx.metric.needs_probabilities else SCORE_BATCH if ctx.metric.batched else 1
    got = collect(ctx, prompts, batch=batch, texts=generates(ctx))
    result = summarize(ctx, got.records, got.errors, time.perf_counter() - started, extra_guards)
    result.stats.resumed_examples = got.resumed
    return result


RecordFn = Callable[[StageContext, list[Prompt], list[list[Sample]]], list[Record]]


class Collected(NamedTuple):
    records: list[Record]
    """One finished record per prompt that has one, in prompt order."""
    errors: list[Record]
    """Records of prompts that failed after all retries (a re-run retries them)."""
    resumed: int
    """Prompts whose record came from an earlier run's file."""


def generates(ctx: StageContext) -> bool:
    """Whether the stage must generate text: not for a probability metric (choice_prob), whose
    score reads only the choices' log-probabilities, unless its `generate: true` asks for a greedy
    answer to read beside it."""
    return not ctx.metric.needs_probabilities or bool(getattr(ctx.metric.config, "generate", True))  # choice_prob's own key


def collect(ctx: StageContext, prompts: Sequence[Prompt], record: RecordFn | None = None, batch: int = 1,
            path: Path | None = None, texts: bool = True) -> Collected:
    """The loop under evaluate(): generate what samples.jsonl (or `path`) lacks, turn each finished
    prompt into a record with `record` (default: every sample scored by the task metric) and append it.

    `batch` prompts are recorded at a time: 1 writes each example the moment it is complete; a stage
    whose scorer runs a model (best_of_n) passes more, so the scorer sees many completions at once.
    `texts=False` generates nothing: each prompt gets one empty sample (finish reason `scored`) for a
    probability metric's score to fill in."""
    record = record or metric_records
    path = path or ctx.run_dir / "samples.jsonl"
    if path not in ctx.opened:
        _set_aside_unfinished(ctx, path)
        ctx.opened.add(path)
    # Keyed by the prompt's content, never the example id alone: a second pass over the same
    # examples with other prompts (self-refine's revision) must not be answered from the first.
    keys = [prompt_key(p.example.id, [m.to_dict() for m in p.messages]) for p in prompts]
    lines, current = [Record.from_dict(d) for d in read_jsonl(path, repair=True)], set(keys)
    if any(record_key(r) not in current for r in lines):
        # Lines of another pass (or prompts since changed): the file keeps only this pass's, so it
        # holds one record per example and readers see the pass the stage reports.
        lines = [r for r in lines if record_key(r) in current]
        write_records(path, lines)
    done = {record_key(r): r for r in lines if not r.error}
    todo = [p for p, k in zip(prompts, keys) if k not in done]
    pending: list[tuple[Prompt, list[Sample]]] = []
    label = f"{ctx.stage.name}: {'generating' if texts else 'scoring'}"
    control = ctx.backend.rate_controller()  # API models: concurrency and 429s on the line
    status = control.status if control is not None else None
    with JsonlWriter(path) as out, progress_bar(label, total=len(todo), status=status) as advance:
        def flush() -> None:
            # One line per example as soon as its batch is complete: a kill loses only what was in flight.
            recs = record(ctx, [p for p, _ in pending], [s for _, s in pending])
            out.write(r.to_dict() for r in recs)
            done.update((record_key(r), r) for r in recs if not r.error)
            advance(len(pending))
            pending.clear()

        def finished(i: int, samples: list[Sample]) -> None:
            pending.append((todo[i], list(samples)))
            if len(pending) >= batch:
                flush()

        if todo and not texts:
            for i in range(len(todo)):
                finished(i, [Sample(text="", finish_reason="scored")])
        elif todo:
            generate(ctx.backend, ctx.cache, [p.messages for p in todo], ctx.gen, ctx.calls, finished)
        if pending:
            flush()
    # Errors were appended too (so they are visible) but a re-run retries them. Each run appends
    # its own line for an example that fails again: count examples failed now, not lines, so that
    # n + errors never exceeds the prompts.
    failed = {k: r for r in map(Record.from_dict, read_jsonl(path)) if r.error and (k := record_key(r)) not in done}
    errors = [failed[k] for k in keys if k in failed]
    records = [done[k] for k in keys if k in done]
    return Collected(records, errors, len(prompts) - len(todo))


def _set_aside_unfinished(ctx: StageContext, path: Path) -> None:
    """Records of a run that never wrote metrics.json are not trusted: nothing vouches for their
    scores (the code that gave them, or the file itself, may have changed). The file is set aside
    as <name>.unfinished and every example is scored again, its generations answered by the
    model-call cache, so a killed run still pays for no finished call. Once metrics.json exists it
    vouches for the file (its records digest), and a re-run that retries failed examples resumes."""
    if ctx.run_dir is None or (ctx.run_dir / "metrics.json").exists() or not path.exists():
        return
    kept = len(read_jsonl(path, repair=True))
    path.replace(path.with_name(path.name + ".unfinished"))
    if kept:
        console.print(f"[bold]{ctx.stage.name}[/bold] re-scoring the {kept} records an unfinished run left "
                      f"in {path.name} (generations from the model-call cache)", highlight=False)


def summarize(ctx: StageContext, records: Sequence[Record], errors: Sequence[Record],
              seconds: float, extra_guards: Sequence[Guard] = ()) -> StageResult:
    typed = list(records)
    samples = [Sample.from_dict(s) for r in typed for s in r.samples]
    metric = mean_ci([r.score for r in typed])
    # A stage that generated no text (choice_prob without `generate`) has no stop rate to check.
    generated = [s for s in samples if s.finish_reason != "scored"]
    guards = [*([stop_guard(generated, ctx.gen.stop, ctx.experiment.config.guards.stop_hit_threshold)]
                if generated else []), *extra_guards]
    k_way: dict[str, float] = {}
    if ctx.metric.k_way:  # chance, majority class and unparsed answers beside the value
        k_way, more = choice_baselines(records, ctx.examples, metric, sampling=ctx.gen.temperature > 0)
        guards += more
    if errors:
        guards.append(Guard("errors", "warn", f"{len(errors)} examples failed after all retries and "
                            f"are not in n; re-run to retry only those", float(len(errors))))
    judged = judged_stats(records)
    name = ctx.experiment.metric_label or ctx.metric.name
    guards += judged_guards(judged, name)
    extra = Extra()
    if ctx.extra_metrics:  # each further metric's mean with its CI, over the same examples
        extra.metrics = {k: mean_ci([r.after["metrics"][k] for r in records]) for k in ctx.extra_metrics}
    prompt_tokens = sum(s.prompt_tokens for s in samples)
    stats = Stats(
        examples=len(records),
        samples=len(samples),
        errors=len(errors),
        # What the metric summarised: checked against samples.jsonl when the result is read back.
        records=RecordsDigest(len(records), records_digest({str(r.id): float(r.score) for r in typed})),
        stop_hit_rate=stop_hit_rate(samples) if generated else None,
        prompt_tokens=prompt_tokens,
        completion_tokens=sum(s.completion_tokens for s in samples),
        cached_tokens=sum(s.cached_tokens for s in samples),  # of prompt_tokens: read from a provider's prompt cache
        mean_prompt_tokens=prompt_tokens / len(samples) if samples else 0.0,
        # The metric's own model calls (a judge's verdicts) are spend of the stage too.
        cost_usd=sum(s.cost for s in samples) + judged.get("metric_cost_usd", 0.0),
        seconds=round(seconds, 3),
        cached_samples=ctx.calls.cached,
        generated_samples=ctx.calls.generated,
        **{**k_way, **judged},  # judged's `unparsed` (the judge's verdicts) wins over k_way's, as it always has
    )
    return StageResult(stage=ctx.stage.name, type=ctx.stage.type, run_id=ctx.run_id,
                       metric_name=name, metric=metric, guards=guards, stats=stats, extra=extra)
