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

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "eos", "length", "error"]


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
    target: str
    choices: tuple[str, ...] | None = None

    @cached_property
    def fingerprint(self) -> str:
        """A digest of everything in the example (id, fields, target, choices): run ids hash these,
        so editing a data row in place gives every stage that reads it a new run folder. Computed
        once per example (a train split may hold many thousands, and run ids are asked often)."""
        blob = json.dumps([self.id, self.fields, self.target, self.choices], sort_keys=True,
                          ensure_ascii=False, default=repr)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Sample:
    """One completion from a backend.

    finish_reason: "stop" (a custom stop sequence fired), "eos" (the model ended its turn),
    "length" (ran into max_tokens) or "error" (the call failed after all retries; `error` says why).
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
        was written as null (`store.write_json`)."""
        nan = float("nan")
        return cls(*(nan if d[k] is None else d[k] for k in ("value", "ci_low", "ci_high")), d["n"])


@dataclass(frozen=True)
class Guard:
    """A guardrail verdict: `level` is "ok", "warn" or "info"; `message` says what to do."""

    name: str
    level: Literal["ok", "warn", "info"]
    message: str
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StageResult:
    """What a stage hands back to the runner; metrics.json is its serialisation."""

    stage: str
    type: str
    run_id: str
    metric_name: str
    metric: MetricValue
    guards: list[Guard] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    oracle: bool = False
    """The stage read the test examples' gold answers to pick its output (Stage.reads_test_targets):
    an upper bound, not a method."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "type": self.type,
            "run_id": self.run_id,
            "metric_name": self.metric_name,
            "metric": self.metric.to_dict(),
            "guards": [g.to_dict() for g in self.guards],
            "stats": self.stats,
            "extra": self.extra,
            "oracle": self.oracle,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageResult:
        return cls(
            stage=d["stage"],
            type=d["type"],
            run_id=d["run_id"],
            metric_name=d["metric_name"],
            metric=MetricValue.from_dict(d["metric"]),
            guards=[Guard(**g) for g in d.get("guards", [])],
            stats=d.get("stats", {}),
            extra=d.get("extra", {}),
            oracle=bool(d.get("oracle", False)),
        )
