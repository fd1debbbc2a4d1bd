"""The few value types every part of ladder passes around.

Frozen dataclasses, not pydantic models: these are created by the thousand in inner loops and
never validated from user input (that is config.py's job).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal

# The typed parts of a StageResult live in their own module (ladder/result_sections.py);
# MetricValue, Baseline and Products are re-exported here, where they have always been imported from.
from ladder.result_sections import Baseline, Extra, MetricValue, Products, Stats  # noqa: F401

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "eos", "length", "error", "scored"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    cache: bool = False
    """The end of a prefix many prompts share (few_shot's fixed shots): the Anthropic backend puts
    a prompt-cache breakpoint here. Not part of to_dict(), so not of any cache key."""

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Example:
    """One row of a task: its input fields, the gold target and, for K-way tasks, the choices."""

    id: str
    fields: dict[str, Any]
    target: str | None
    """The gold answer; None on an open-ended task (no `task.target`), scored by a judged metric."""
    choices: tuple[str, ...] | None = None

    @cached_property
    def fingerprint(self) -> str:
        """A digest of everything in the example (id, fields, target, choices): run ids hash these,
        so editing a data row in place gives every stage that reads it a new run folder. Computed
        once per example (a train split may hold many thousands, and run ids are asked often)."""
        blob = json.dumps([self.id, self.fields, self.target, self.choices], sort_keys=True,
                          ensure_ascii=False, default=repr)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    @cached_property
    def content(self) -> str:
        """A digest of the example's content without its id (fields, target, choices): the same
        question in two experiments, whatever row it sits in (a default id is the row position,
        `test-3`). `ladder compare` pairs examples across experiments on it (manifest.json's
        subsample records it beside each id)."""
        blob = json.dumps([self.fields, self.target, self.choices], sort_keys=True, ensure_ascii=False,
                          default=repr)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Sample:
    """One completion from a backend.

    finish_reason: "stop" (a custom stop sequence fired), "eos" (the model ended its turn),
    "length" (ran into max_tokens) or "error" (the call failed after all retries; `error` says why);
    "scored": nothing was generated — a probability metric (choice_prob) scored the prompt itself.
    """

    text: str
    finish_reason: FinishReason
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprob: float | None = None
    error: str | None = None
    cost: float = 0.0
    cached_tokens: int = 0
    """Of prompt_tokens, those the provider read from its prompt cache (billed at the cached-input
    price; API backends only)."""

    def to_dict(self) -> dict[str, Any]:
        # Every field is a scalar, so a plain copy equals asdict() at a twentieth of its cost: paid
        # once per sample on the event loop of the API backends (scripts/bench_api.py).
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Record:
    """One line of a stage's samples.jsonl: a test example's prompt, its samples and its score.

    On disk the keys keep this order — id, target, prompt, the stage's `info` (e.g. few_shot's
    shots), score, error, samples, then anything a stage adds after scoring (`after`: best_of_n's
    selected / selector / answer) — so `Record.from_dict(d).to_dict() == d`, key order included,
    and files written before this type existed read back unchanged."""

    id: str
    target: Any
    prompt: list[dict[str, str]]
    samples: list[dict[str, Any]]
    """Each sample as `Sample.to_dict()` plus what scoring added (score, extracted; best_of_n:
    selector, selector_meta, ...). A failed sample has no `score`."""
    score: float | None = None
    """The per-example value the stage's metric averages (None when no sample was scored)."""
    error: bool = False
    """True when no sample could be scored: left out of n, retried on a re-run."""
    info: dict[str, Any] = field(default_factory=dict)
    """What the stage recorded beside the prompt (`Prompt.info`), written before `score`."""
    after: dict[str, Any] = field(default_factory=dict)
    """Keys a stage added once the samples were scored (best_of_n: selected, selector, answer)."""

    _HEAD = ("id", "target", "prompt")
    _TAIL = ("score", "error", "samples")

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "target": self.target, "prompt": self.prompt, **self.info,
                "score": self.score, "error": self.error, "samples": self.samples, **self.after}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        info: dict[str, Any] = {}
        after: dict[str, Any] = {}
        seen_samples = False
        for k, v in d.items():
            if k == "samples":
                seen_samples = True
            elif k not in cls._HEAD and k not in cls._TAIL:
                (after if seen_samples else info)[k] = v
        return cls(id=d["id"], target=d.get("target"), prompt=d.get("prompt", []), samples=d.get("samples", []),
                   score=d.get("score"), error=bool(d.get("error", False)), info=info, after=after)

    @property
    def selected(self) -> int | None:
        """The index of the sample a selecting stage (best_of_n) kept, if any."""
        return self.after.get("selected")

    def output(self) -> str:
        """The text the row stands for: the sample a selecting stage kept, else its best-scored sample
        (never a failed one, which has no score; "" when none was scored). With n > 1 samples the
        first is not that: it may have failed, or scored below the others."""
        if self.selected is not None:
            return self.samples[self.selected]["text"]
        scored = [s for s in self.samples if s.get("score") is not None]
        return max(scored, key=lambda s: s["score"])["text"] if scored else ""

    def user_prompt(self) -> str:
        """The last user turn: what was asked, without the instruction and shots."""
        return next((m["content"] for m in reversed(self.prompt) if m.get("role") == "user"), "")


@dataclass(frozen=True)
class Score:
    """A metric's verdict on one completion. `value` is what gets averaged (1.0 = correct)."""

    value: float
    extracted: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Set when a scorer's model call failed after all retries: there is no verdict, so `value`
    means nothing and the example it belongs to is an error (retried on re-run), not a score."""


@dataclass(frozen=True)
class Guard:
    """A guardrail verdict: `level` is "ok", "warn" or "info"; `message` says what to do."""

    name: str
    level: Literal["ok", "warn", "info"]
    message: str
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CurveKind = Literal["step", "n"]


@dataclass
class Curve:
    """A curve `ladder report` draws for a stage: series over one x axis, of a declared kind."""

    name: str
    x: list[float]
    series: dict[str, list[float | None]]
    kind: CurveKind = "step"
    """"step": over training steps (sft, rl, reward_model); "n": over the number of samples
    selected from (best_of_n's best-of-k), drawn on a log axis when it spans a wide range."""
    xlabel: str = ""
    ylabel: str = ""
    hlines: dict[str, float] = field(default_factory=dict)
    """Dashed reference lines (label → y), e.g. chance loss or where selection starts and ends."""

    def to_spec(self) -> dict[str, Any]:
        """The metrics.json shape under extra["curves"][name] (what stages have always written)."""
        spec: dict[str, Any] = {"x": self.x, "y": self.series, "xlabel": self.xlabel, "ylabel": self.ylabel}
        if self.kind == "n":
            spec["kind"] = "n"
        if self.hlines:
            spec["hlines"] = self.hlines
        return spec

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any]) -> Curve | None:
        """From {"x": [...], "y": [...] | {series: [...]}, xlabel, ylabel, hlines, kind}; None when
        the spec holds no usable series (e.g. a curve switched off)."""
        x, y = spec.get("x"), spec.get("y")
        if not isinstance(x, list) or y is None:
            return None
        series = y if isinstance(y, dict) else {spec.get("ylabel") or name: y}
        series = {k: v for k, v in series.items() if isinstance(v, list) and len(v) == len(x)}
        if not series or not x:
            return None
        xlabel = spec.get("xlabel", "")
        kind = spec.get("kind") or ("n" if xlabel.lower() in ("n", "k") else "step")
        return cls(name, x, series, kind, xlabel, spec.get("ylabel", ""),
                   {k: float(v) for k, v in (spec.get("hlines") or {}).items() if isinstance(v, (int, float))})

    @classmethod
    def best_of_k(cls, name: str, points: list[dict[str, Any]]) -> Curve | None:
        """best_of_n's curve points [{k, selector, metric, kl_pool, kl_bound, majority?}, ...]."""
        if len(points) < 2:
            return None
        keys = [k for k in points[0] if k != "k" and all(isinstance(p.get(k), (int, float, type(None)))
                                                         and not isinstance(p.get(k), bool) for p in points)]
        return cls(name, [p["k"] for p in points], {BEST_OF_K_LABELS.get(k, k): [p.get(k) for p in points]
                                                     for k in keys}, "n", "k")


BEST_OF_K_LABELS = {"kl_bound": "KL upper bound log k − (k−1)/k", "kl_pool": "KL over the sample pool (exact)"}
"""Readable series names for best_of_n's curve points: the bound must read as a bound."""


@dataclass
class StageResult:
    """What a stage hands back to the runner; metrics.json is its serialisation.

    `stats` and `extra` are typed (ladder/result_sections.py): a stage sets their attributes
    (`result.stats.train_examples = n`, `result.extra.training = {...}`), and everything downstream
    (runner, table, report, advice, compare) reads attributes, never keys. A dict given for either
    is converted: an unknown `stats` key is refused; an `extra` key that is no declared section
    goes to `extra.custom` (a plugin's free-form sections)."""

    stage: str
    type: str
    run_id: str
    metric_name: str
    metric: MetricValue
    guards: list[Guard] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    extra: Extra = field(default_factory=Extra)
    oracle: bool = False
    """The stage read the test examples' gold answers to pick its output (Stage.reads_test_targets):
    an upper bound, not a method."""
    selected_by_metric: bool = False
    """The stage picked its output (best_of_n's scorer) or trained (rl's reward) by the very scorer
    that scores its row: optimistic, as the metric's own noise was selected for."""

    def __post_init__(self) -> None:
        if isinstance(self.stats, dict):
            self.stats = Stats.from_dict(self.stats)
        if isinstance(self.extra, dict):
            self.extra = Extra.from_dict(self.extra)

    @property
    def products(self) -> Products:
        """What later stages can use by naming this stage (`from_stage`)."""
        return Products(self.extra.model or None, self.extra.reward_model or None)

    @products.setter
    def products(self, value: Products) -> None:
        self.extra.model, self.extra.reward_model = value.model or None, value.reward_model or None

    @property
    def baseline(self) -> Baseline | None:
        return self.extra.baseline

    @baseline.setter
    def baseline(self, value: Baseline | None) -> None:
        self.extra.baseline = value

    @property
    def curves(self) -> list[Curve]:
        """The stage's curves: each of extra.curves (the declared shape), and a best-of-k curve
        where best_of_n put one (extra.curve, or rl's own best-of-N at extra.best_of_n)."""
        out = [c for name, spec in (self.extra.curves or {}).items() if isinstance(spec, dict)
               and (c := Curve.from_spec(name, spec)) is not None]
        for name, points in (("curve", self.extra.curve),
                             ("best_of_n.curve", (self.extra.best_of_n or {}).get("curve"))):
            if isinstance(points, list) and (c := Curve.best_of_k(name, points)) is not None:
                out.append(c)
        return out

    def add_curve(self, curve: Curve) -> None:
        if self.extra.curves is None:
            self.extra.curves = {}
        self.extra.curves[curve.name] = curve.to_spec()

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "type": self.type,
            "run_id": self.run_id,
            "metric_name": self.metric_name,
            "metric": self.metric.to_dict(),
            "guards": [g.to_dict() for g in self.guards],
            "stats": self.stats.to_dict(),
            "extra": self.extra.to_dict(),
            "oracle": self.oracle,
            **({"selected_by_metric": True} if self.selected_by_metric else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageResult:
        """From metrics.json, whichever ladder wrote it (a stats key this version does not know is skipped)."""
        return cls(
            stage=d["stage"],
            type=d["type"],
            run_id=d["run_id"],
            metric_name=d["metric_name"],
            metric=MetricValue.from_dict(d["metric"]),
            guards=[Guard(**g) for g in d.get("guards", [])],
            stats=Stats.from_dict(d.get("stats", {}), strict=False),
            extra=Extra.from_dict(d.get("extra", {})),
            oracle=bool(d.get("oracle", False)),
            selected_by_metric=bool(d.get("selected_by_metric", False)),
        )
