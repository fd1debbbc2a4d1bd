"""The typed parts of a StageResult: `Stats` (counts, tokens, spend, time) and `Extra` (what a stage
reports beside its number), each a dataclass of named optional sections.

A stage sets attributes, never keys: `result.stats.train_examples = 12`, `result.extra.training =
{...}`. Both are slotted, so a misspelt or undeclared name (`result.stats.train_exampels = 12`)
raises AttributeError instead of writing a key nothing reads. A plugin stage's own sections go
under `Extra.custom` (free-form, written beside the declared ones).

metrics.json keeps the shape it has always had: `to_dict()` writes each section under the key it
always had, and `from_dict()` reads every metrics.json written before these types existed. This
module imports nothing from ladder (ladder.types re-exports MetricValue, Baseline, Products)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class MetricValue:
    """An aggregate with its sample size and 95% confidence interval: never a bare number."""

    value: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricValue:
        """Inverse of to_dict after a trip through JSON, where a NaN (n=0 has no mean, n=1 no CI)
        was written as null (`store.write_json`). A difference as stages write it may lack n."""
        nan = float("nan")
        return cls(*(nan if d.get(k) is None else d[k] for k in ("value", "ci_low", "ci_high")), d.get("n", 0))


@dataclass
class Baseline:
    """A baseline a stage measured on its own examples, shown on a line under its row (rl: best-of-N
    with the same reward), with the stage's paired difference from it."""

    label: str
    metric: MetricValue
    diff: MetricValue | None = None
    """The stage minus the baseline, paired on the same examples (None: not computed)."""
    oracle: bool = False
    """The baseline reads the test answers (best-of-N picked by the task metric): an upper bound."""

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "metric": self.metric.to_dict(),
                "diff": self.diff.to_dict() if self.diff else None, "oracle": self.oracle}


@dataclass
class Products:
    """What a finished stage hands later stages, by stage name (`from_stage`)."""

    model: dict[str, Any] | None = None
    """Backend config keys of the model it trained (e.g. {backend: hf, name: <folder>}): a later
    stage's `model: {from_stage: <stage>}` evaluates it (Stage.produces_model)."""
    reward_model: dict[str, Any] | None = None
    """The reward model it trained ({name: <folder>}): a pm scorer's `from_stage:` reads it
    (Stage.produces_reward_model)."""

    def to_dict(self) -> dict[str, Any]:
        """Only what was produced: the runner's `produced` map and run ids hash this."""
        return {k: v for k, v in (("model", self.model), ("reward_model", self.reward_model)) if v}


@dataclass(frozen=True)
class RecordsDigest:
    """What the metric summarised: the count and digest of samples.jsonl's id → score, checked
    against the file whenever the result is read back (evidence.samples_mismatch)."""

    count: int
    digest: str


def _sections_to_dict(obj: Any, keep_none: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if f.name == "custom" or (v is None and f.name not in keep_none):
            continue
        if isinstance(v, RecordsDigest):
            v = asdict(v)
        elif isinstance(v, Baseline):
            v = v.to_dict()
        elif f.name == "metrics":  # Extra.metrics: name -> MetricValue
            v = {k: m.to_dict() for k, m in v.items()}
        out[f.name] = v
    return out


@dataclass(slots=True)
class Stats:
    """metrics.json `stats`: what the stage counted and spent. The first group every evaluating
    stage fills (`stages.summarize`); the rest are optional sections (None: the stage has none, and
    nothing is written)."""

    examples: int = 0
    samples: int = 0
    errors: int = 0
    """Examples that failed after all retries: not in n, retried on a re-run."""
    records: RecordsDigest | None = None
    stop_hit_rate: float | None = None
    """Share of samples that ended on a stop sequence; None (written as null) when nothing was generated."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    """Of prompt_tokens, those read from a provider's prompt cache."""
    mean_prompt_tokens: float = 0.0
    cost_usd: float = 0.0
    """Every model call the stage made: its samples, the metric's and the scorer's calls."""
    seconds: float = 0.0
    cached_samples: int = 0
    generated_samples: int = 0
    # K-way metrics (choice, choice_prob): what the number must be read against.
    chance: float | None = None
    majority: float | None = None
    unparsed: float | None = None
    """K-way: share of answers that are none of the choices; a judged metric: share of verdicts
    that did not parse (the judge's value wins where both apply)."""
    # A metric that calls a model (a judge): its own calls.
    metric_cost_usd: float | None = None
    metric_prompt_tokens: int | None = None
    metric_completion_tokens: int | None = None
    unparsed_count: int | None = None
    # A pairwise judge (`metric: {type: judge, pairwise: ...}`): its comparisons.
    pairwise_compared: int | None = None
    """Examples compared in both orders."""
    judge_inconsistent: float | None = None
    """Share of the compared examples whose two orders disagreed (counted as ties)."""
    judge_inconsistent_count: int | None = None
    pairwise_identical: int | None = None
    """Examples whose two outputs were identical: ties, no judge call."""
    pairwise_reference: int | None = None
    """The reference stage's own row: its examples, each 0.5 by definition."""
    resumed_examples: int | None = None
    """Examples whose record came from samples.jsonl of an earlier run."""
    # A selecting or rewarded stage (best_of_n's scorer, rl's reward): the scorer's calls.
    scorer_cost_usd: float | None = None
    scorer_prompt_tokens: int | None = None
    scorer_completion_tokens: int | None = None
    # Training stages.
    train_examples: int | None = None
    train_pairs: int | None = None
    test_pairs: int | None = None
    # Set by the runner for API models.
    rate_control: dict[str, Any] | None = None
    """The rate controller's record (concurrency over time, 429s), when it answered requests."""
    sampling_sent: dict[str, Any] | None = None
    """The sampling arguments requests really carried, when the backend sends only some."""

    def to_dict(self) -> dict[str, Any]:
        # stop_hit_rate has always been written, null when nothing was generated.
        return _sections_to_dict(self, keep_none=("stop_hit_rate",))

    @classmethod
    def from_dict(cls, d: dict[str, Any], strict: bool = True) -> Stats:
        """From metrics.json's `stats` (`strict=False`: a key this version does not know — from an
        older or newer ladder — is skipped, so any results folder loads) or from a stage's dict
        (`strict`: an unknown key is refused, naming it)."""
        known = {f.name for f in fields(cls)}
        unknown = [k for k in d if k not in known]
        if unknown and strict:
            raise TypeError(f"StageResult.stats has no field {', '.join(map(repr, unknown))}: Stats declares "
                            f"{', '.join(sorted(known))}; put a stage's own numbers in `extra.custom`")
        kw = {k: v for k, v in d.items() if k in known}
        if isinstance(kw.get("records"), dict):
            kw["records"] = RecordsDigest(**kw["records"])
        return cls(**kw)


@dataclass(slots=True)
class Extra:
    """metrics.json `extra`: what a stage reports beside its number, by named section (None: the
    stage has none, and nothing is written). A section's inner shape belongs to the stage that
    writes it; the named sections are what ladder itself reads (table, report, advice, runner)."""

    metrics: dict[str, MetricValue] | None = None
    """The further metrics (`metrics:`): name → mean with CI, over the same examples."""
    selector: dict[str, Any] | None = None
    """best_of_n: the selector's name, whether it is an oracle, its selected mean, parse failures."""
    curve: list[dict[str, Any]] | None = None
    """best_of_n: the best-of-k curve's points [{k, selector, metric, ...}]."""
    distinct_per_prompt: float | None = None
    majority_curve: str | None = None
    """best_of_n: how majority@k was computed."""
    distinct_answers_per_prompt: float | None = None
    export: dict[str, Any] | None = None
    """best_of_n: the SFT export (path, rows, candidates, split, min_score, cost_usd, mean_score)."""
    scorer_calls: dict[str, Any] | None = None
    """best_of_n: the scorer's model calls {generated, cached, errors}."""
    best_of_n: dict[str, Any] | None = None
    """rl: its best-of-N with the same reward (n, metric, scores, costs, curve, oracle, ...)."""
    model: dict[str, Any] | None = None
    """Products: the trained model's backend config keys (sft, rl); see StageResult.products."""
    reward_model: dict[str, Any] | None = None
    """Products: the trained reward model ({name: <folder>}) (reward_model)."""
    policy: str | None = None
    """"rl": the model is an RL policy (its probabilities are not calibrated)."""
    training: dict[str, Any] | None = None
    """Training stages: route, method, steps, parameters, resumed_from, ... as the trainer reports."""
    openai: dict[str, Any] | None = None
    """sft on the OpenAI route: the fine-tuning job (job_id, file_id, base_model, ...)."""
    curves: dict[str, dict[str, Any]] | None = None
    """Named curves in the declared spec shape (Curve.to_spec); read them as StageResult.curves."""
    choice_loss: dict[str, Any] | None = None
    """sft on a K-way task: the test loss over the choices beside chance loss."""
    baseline: Baseline | None = None
    """A baseline the stage measured on its own examples (rl: best-of-N with the same reward)."""
    train_subsample: dict[str, Any] | None = None
    """Training stages: the record of the train draw (n, total, seed, digest)."""
    mean_margin: float | None = None
    """reward_model: mean chosen − rejected reward on the held-out pairs."""
    calibration: dict[str, Any] | None = None
    """reward_model: calibration of its pairwise probabilities."""
    agreement: dict[str, Any] | None = None
    """A judged row checked against people's labels (or the gold answers): metric name ("" the
    primary) → accuracy and Cohen's kappa with CIs and n labelled (ladder.labels). Attached when
    results are read, never stored in metrics.json."""
    custom: dict[str, Any] = field(default_factory=dict)
    """Free-form: a plugin stage's own sections, written beside the declared ones in metrics.json's
    `extra` under their own keys (a key may not be a declared section's name). Read back into
    `custom`, as is any key a newer ladder wrote."""

    def to_dict(self) -> dict[str, Any]:
        out = _sections_to_dict(self)
        taken = [k for k in self.custom if k in _EXTRA_FIELDS]
        if taken:
            raise ValueError(f"Extra.custom key(s) {', '.join(map(repr, taken))} name declared sections of "
                             f"Extra: set `extra.{taken[0]}` instead, or rename the custom section")
        return {**out, **self.custom}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Extra:
        """From metrics.json's `extra` (any version): a key that is no declared section goes to `custom`."""
        kw = {k: v for k, v in d.items() if k in _EXTRA_FIELDS}
        if kw.get("metrics") is not None:
            kw["metrics"] = {k: MetricValue.from_dict(m) for k, m in kw["metrics"].items()}
        if kw.get("baseline"):
            b = kw["baseline"]
            # An rl stage's best-of-N picked by the task metric reads the test answers (older
            # metrics.json say so only under extra.best_of_n).
            oracle = b.get("oracle", (d.get("best_of_n") or {}).get("oracle"))
            kw["baseline"] = Baseline(b["label"], MetricValue.from_dict(b["metric"]),
                                      MetricValue.from_dict(b["diff"]) if b.get("diff") else None, bool(oracle))
        else:
            kw.pop("baseline", None)
        return cls(**kw, custom={k: v for k, v in d.items() if k not in _EXTRA_FIELDS})


_EXTRA_FIELDS = frozenset(f.name for f in fields(Extra)) - {"custom"}
