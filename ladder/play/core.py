"""Rung 0, the playground: a grid of rows × columns over the same core as `ladder run`.

Rows are examples of the experiment's test subsample (the very examples `ladder run` scores), in
an order drawn with the experiment's seed, the first n shown; a free message typed by hand is a
row too (no gold, so no score). A column is one prompt version on one model with its generation
settings: instruction, template, model spec (the YAML's `model:` keys), temperature / top_p /
max_tokens / n, and 0-10 pinned shots (rows with the answer to show), put before each prompt in
the few_shot rung's format (`examples:`, the last shot marked as a shared prefix), so that a
column saved as a variant (ladder/play/variant.py) sends byte-identical requests and `ladder run
--variant` scores the same rows exactly as the page did.

Every call goes through `ladder.backends.base.generate`: the model-call cache, the backends'
concurrency and retries. What a run costs counts against a budget (refused before the run when
its worst case would pass it); every finished cell is appended to
results/<exp>/playground/<session>.jsonl (ladder/play/log.py), from which a session reopens.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ladder.errors import LadderError
from ladder.types import Example, Message

MAX_SHOTS = 10
GEN_KEYS = ("temperature", "top_p", "max_tokens", "n")


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class BudgetExceeded(LadderError):
    """A run whose worst-case cost would take the session past its budget."""


@dataclass
class Column:
    """One prompt version on one model. `model` holds the backend keys as the YAML writes them
    (never a key: API keys are read from the environment variable `api_key_env` names)."""

    instruction: str
    template: str
    model: dict[str, Any]
    generation: dict[str, Any] = field(default_factory=dict)
    """Overrides of the experiment's generation: any of temperature, top_p, max_tokens, n."""
    shots: list[dict[str, Any]] = field(default_factory=list)
    """Pinned shots: {"id": row id, "answer": the answer shown for it}."""
    label: str = ""

    def spec(self) -> dict[str, Any]:
        return {"instruction": self.instruction, "template": self.template, "model": self.model,
                "generation": self.generation, "shots": self.shots}

    @property
    def id(self) -> str:
        blob = json.dumps(self.spec(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def version(self) -> str:
        """The prompt version (instruction + template + shots), whatever the model."""
        blob = json.dumps([self.instruction, self.template, self.shots], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    @classmethod
    def from_spec(cls, spec: dict[str, Any], label: str = "") -> Column:
        return cls(spec["instruction"], spec["template"], dict(spec["model"]), dict(spec.get("generation") or {}),
                   [dict(s) for s in spec.get("shots") or []], label)


@dataclass
class Cell:
    row: str
    column: str
    outputs: list[str]
    score: float | None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    seconds: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def model_label(model: dict[str, Any]) -> str:
    return f"{model.get('backend', 'hf')}:{model.get('name')}"


class Playground:
    """The grid's state and the one way to fill it, shared by `ladder try` and `ladder play`."""

    def __init__(self, config: str | Path, sets: Sequence[str] = (), n: int = 20, budget: float = 1.0,
                 session: str | None = None, resume: bool = True):
        from ladder.cache import Cache
        from ladder.config import load_experiment
        from ladder.play.log import SessionLog
        from ladder.runner import prepare
        from ladder.stages import few_shot  # noqa: F401  (imported now, not on the first run: ~0.3 s)

        self.path = Path(config)
        self.sets = list(sets)
        self.exp = load_experiment(self.path, self.sets)
        self.plan = prepare(self.exp)
        self.task = self.plan.task
        self.metric = self.plan.metric
        self.cache = Cache(self.exp.config.cache_dir)
        self.budget = budget
        self.spent = 0.0
        self.seed = self.exp.config.seed
        self.n = max(1, n)
        self._all = {ex.id: ex for ex in self.plan.examples}
        self._test: dict[str, Example] | None = None
        self.filter = ""
        """Shown rows must contain this text (the page's filter box)."""
        self.messages: dict[str, str] = {}
        """Free rows: id → the message typed."""
        self.order = self._draw(0)
        self.columns: dict[str, Column] = {}
        self.cells: dict[tuple[str, str], Cell] = {}
        self._lock = threading.Lock()
        self._backends: dict[str, Any] = {}
        self._model_locks: dict[str, Any] = {}
        self._probed: set[str] = set()
        self.log = SessionLog.open(self.exp.results_path / "playground", session, resume)
        if self.log.restored:
            self._restore(self.log.restored)
        else:
            self.log.write({"kind": "session", "config": str(self.path), "seed": self.seed, "n": self.n})
        self.add_column(self.base_column())

    # -- rows ------------------------------------------------------------------------------------

    def _draw(self, shuffle: int) -> list[str]:
        ids = list(self._all)
        random.Random(f"{self.seed}:{shuffle}" if shuffle else self.seed).shuffle(ids)
        return ids

    def reshuffle(self, k: int) -> None:
        self.order = self._draw(k)

    def rows(self, text_filter: str = "") -> list[str]:
        """The shown rows: free messages first, then the first n examples (matching the filter)."""
        q = text_filter.lower()
        picked = [i for i in self.order if not q or q in json.dumps(self._all[i].fields, ensure_ascii=False).lower()]
        return list(self.messages) + picked[:self.n]

    def add_message(self, text: str) -> str:
        rid = f"msg-{len(self.messages) + 1}"
        self.messages[rid] = text
        self.log.write({"kind": "message", "row": rid, "text": text})
        return rid

    def example(self, rid: str) -> Example:
        if rid in self._all:
            return self._all[rid]
        if self._test is None:
            self._test = {ex.id: ex for ex in self.task.examples("test")}
        if rid not in self._test:
            raise LadderError(f"no test example has id '{rid}'", where=str(self.path), field="--shots",
                              fix="pin ids the playground shows (the first column of `ladder try`)")
        return self._test[rid]

    def row_view(self, rid: str) -> dict[str, Any]:
        if rid in self.messages:
            return {"id": rid, "text": self.messages[rid], "target": None, "message": True}
        ex = self.example(rid)
        try:
            text = self.task.user_text(ex)
        except LadderError:
            text = json.dumps(ex.fields, ensure_ascii=False)
        return {"id": rid, "text": text, "target": ex.target, "message": False}

    # -- columns ---------------------------------------------------------------------------------

    def base_column(self) -> Column:
        cfg = self.exp.config.task
        return Column(cfg.instruction or "", cfg.template, self.model_spec(), {}, [])

    def model_spec(self, spec: str | dict[str, Any] | None = None) -> dict[str, Any]:
        """The YAML's model keys for `spec`: a bare name keeps the experiment's backend (as the
        YAML's `models:` list does); a mapping is a full `model:` section."""
        model = self.exp.model
        fields = type(model).model_fields
        # The keys that differ from their defaults (plus backend and name): what a YAML would write.
        base = {k: v for k, v in model.model_dump(mode="json").items()
                if k in ("backend", "name") or (k in fields and v != fields[k].default and v is not None)}
        if spec is None:
            return base
        if isinstance(spec, str) and spec.lstrip().startswith("{"):
            try:
                spec = json.loads(spec)
            except json.JSONDecodeError as exc:
                raise LadderError(f"model {spec}: not a JSON mapping ({exc})", field="model",
                                  fix='write e.g. {"backend": "openai", "name": "gpt-4o-mini"}') from None
        if isinstance(spec, str):
            backend, sep, name = spec.partition(":")
            if sep and backend in ("hf", "openai", "anthropic"):
                return {"backend": backend, "name": name}
            return {**{k: v for k, v in base.items() if k != "name"}, "name": spec}
        return {"backend": base["backend"], **spec}

    def add_column(self, col: Column) -> Column:
        if len(col.shots) > MAX_SHOTS:
            raise LadderError(f"{len(col.shots)} pinned shots: the few_shot rung takes 1-{MAX_SHOTS}",
                              field="shots", fix=f"unpin some (keep at most {MAX_SHOTS})")
        for s in col.shots:
            self.example(s["id"])  # an unknown id is refused here, not on the first run
        self._checked(col)
        with self._lock:
            if col.id not in self.columns:
                # A label per prompt version, in order of appearance: v0 is the YAML's own prompt.
                seen = {c.version: c.label for c in self.columns.values()}
                col.label = seen.get(col.version) or f"v{len(seen.keys())}"
                self.columns[col.id] = col
                self.log.write({"kind": "column", "column": col.id, "label": col.label, "version": col.version,
                                "spec": col.spec()})
        return self.columns[col.id]

    def _checked(self, col: Column) -> None:
        """Settings and model keys that cannot work are refused when the column is made (one clear
        line, never a traceback); whether the model answers is seen when it runs."""
        from pydantic import ValidationError

        from ladder.config.experiment import backend_config

        for what, check in (("generation", lambda: self.generation(col)), ("model", lambda: backend_config(col.model))):
            try:
                check()
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise LadderError(f"{what}.{where}: {first['msg']}", field=f"{what}.{where}",
                                  fix="correct it in the column's settings") from None

    def generation(self, col: Column):
        from ladder.config import GenerationConfig

        merged = {**self.exp.config.generation.model_dump(), **col.generation}
        merged["seed"] = self.exp.seed_for(merged.get("seed"))
        return GenerationConfig(**merged)

    def shot_rows(self, col: Column) -> list[dict[str, Any]]:
        """The pinned shots as few_shot `examples:` rows: the row's fields and the answer shown."""
        target = self.exp.config.task.target
        return [{**self.example(s["id"]).fields, target: s["answer"]} for s in col.shots]

    def _task(self, col: Column):
        task = copy.copy(self.task)
        if hasattr(task, "config"):
            task.config = task.config.model_copy(update={"instruction": col.instruction, "template": col.template})
        return task

    def prompt(self, col: Column, rid: str) -> list[Message]:
        """The messages `ladder run` would send for this row under this column (raises DataError
        when the template names a field the row lacks)."""
        from ladder.stages.few_shot import mark_shared_prefix

        task = self._task(col)
        shots = [task.make_example(row, f"shot-{i}", field=f"pinned shot {s['id']}")
                 for i, (row, s) in enumerate(zip(self.shot_rows(col), col.shots))]
        if rid in self.messages:
            messages = [Message("system", col.instruction)] if col.instruction else []
            for shot in shots:
                messages += [Message("user", task.user_text(shot)), Message("assistant", shot.target)]
            messages.append(Message("user", self.messages[rid]))
        else:
            messages = task.render(self.example(rid), shots)
        return mark_shared_prefix(messages) if shots else messages

    def backend(self, col: Column):
        """The column's backend, checked (key, URL, reachable) once per session."""
        from ladder.config.experiment import backend_config
        from ladder.registry import BACKENDS

        key = json.dumps(col.model, sort_keys=True)
        with self._lock:
            if key in self._backends:
                return self._backends[key]
        try:
            config = backend_config(col.model)
        except Exception as exc:  # a pydantic ValidationError: say it plainly, never a traceback
            raise LadderError(f"model {model_label(col.model)}: {str(exc).splitlines()[-1] if str(exc) else exc}",
                              field="model", fix="write the model as the YAML's `model:` takes it") from None
        from ladder.backends.api import APIBackend

        backend = BACKENDS.get(config.backend)(config)
        backend.preflight()
        backend.check_generation(self.generation(col))
        # One live check per server and key, not per model: a second model on the same server is
        # not another round trip before its first cell.
        server = json.dumps([config.backend, getattr(config, "base_url", None), getattr(config, "api_key_env", None)])
        if server not in self._probed:
            backend.probe()
            self._probed.add(server)
        with self._lock:
            self._backends.setdefault(key, backend)
            # A local model is not safe to drive from two threads; an API backend is (its own loop per call).
            self._model_locks.setdefault(key, threading.Lock() if not isinstance(backend, APIBackend) else _NoLock())
        return self._backends[key]

    # -- running ---------------------------------------------------------------------------------

    def run(self, column_id: str, rows: Sequence[str] | None = None,
            on_cell: Callable[[Cell], None] | None = None) -> list[Cell]:
        """Fill the column's cells for `rows` (default: the shown rows), reporting each cell as it
        arrives. A column that cannot run at all (bad template, unreachable model) gets that
        message in every cell; the other columns are not affected."""
        from ladder.backends.base import CallStats, _request_payload, generate
        from ladder.cache import cache_key

        col = self.columns[column_id]
        rows = list(rows if rows is not None else self.rows())
        started = time.perf_counter()
        out: list[Cell] = []

        def emit(cell: Cell) -> None:
            with self._lock:
                self.cells[(cell.row, cell.column)] = cell
                self.spent += cell.cost
            self.log.write({"kind": "cell", "version": col.version, "label": col.label,
                            "model": model_label(col.model), **cell.to_dict()})
            out.append(cell)
            if on_cell:
                on_cell(cell)

        def fail(message: str, which: Sequence[str]) -> list[Cell]:
            for rid in which:
                emit(Cell(rid, col.id, [], None, error=message, seconds=time.perf_counter() - started))
            return out

        try:
            gen = self.generation(col)
            prompts = [self.prompt(col, rid) for rid in rows]
            backend = self.backend(col)
        except LadderError as exc:
            return fail(exc.render(), rows)
        keys = [[cache_key({**_request_payload(backend, p, gen), "index": i}) for i in range(gen.n)] for p in prompts]
        found = self.cache.get_many(k for row in keys for k in row)
        cached = [all(k in found for k in row) for row in keys]
        self.check_budget(backend, [p for p, c in zip(prompts, cached) if not c], gen)

        def done(p: int, samples: list) -> None:
            ok = [s for s in samples if s.finish_reason != "error"]
            err = next((s.error for s in samples if s.finish_reason == "error"), None)
            score = self.score(rows[p], [s.text for s in ok]) if ok else None
            emit(Cell(rows[p], col.id, [s.text for s in samples if s.finish_reason != "error"], score,
                      error=None if ok else (err or "the call failed"),
                      prompt_tokens=sum(s.prompt_tokens for s in ok), completion_tokens=sum(s.completion_tokens for s in ok),
                      cost=0.0 if cached[p] else sum(s.cost for s in ok), seconds=time.perf_counter() - started,
                      cached=cached[p]))

        with self._model_locks[json.dumps(col.model, sort_keys=True)]:
            try:
                generate(backend, self.cache, prompts, gen, CallStats(), done)
            except Exception as exc:  # the rows not yet answered show why; the other columns go on
                message = exc.render() if isinstance(exc, LadderError) else f"{type(exc).__name__}: {exc}"
                answered = {c.row for c in out}
                return fail(message, [r for r in rows if r not in answered])
        return out

    def check_budget(self, backend: Any, prompts: list[list[Message]], gen: Any) -> None:
        """Refuse a run whose worst case (every uncached prompt answered with max_tokens) would take
        the session past its budget."""
        if not prompts:
            return
        copies = backend.prompt_copies(gen.n)
        worst = sum(backend.estimate_cost(backend.count_tokens(p) * copies, gen.max_tokens * gen.n) for p in prompts)
        if self.spent + worst > self.budget:
            raise BudgetExceeded(
                f"this run could cost up to ${worst:.4f} ({len(prompts)} uncached prompts × {gen.n} samples × "
                f"{gen.max_tokens} max tokens), and ${self.spent:.4f} of the ${self.budget:.2f} budget is spent",
                field="budget", fix="raise the budget (--budget in the terminal, the budget box in the page), or "
                                    "run fewer rows, samples or max_tokens")

    def score(self, rid: str, texts: list[str]) -> float | None:
        """Mean task-metric score of the row's samples (as samples.jsonl's `score`); None for a free
        message (no gold) or a metric that reads probabilities (the page does not compute those)."""
        if rid in self.messages or self.metric.needs_probabilities or not texts:
            return None
        ex = self.example(rid)
        return sum(self.metric.score(ex, t).value for t in texts) / len(texts)

    # -- restoring -------------------------------------------------------------------------------

    def _restore(self, lines: list[dict[str, Any]]) -> None:
        for line in lines:
            kind = line.get("kind")
            if kind == "column":
                col = Column.from_spec(line["spec"], line.get("label", ""))
                self.columns.setdefault(col.id, col)
            elif kind == "message":
                self.messages[line["row"]] = line["text"]
            elif kind == "cell" and line.get("column") in self.columns:
                fields = {k: line[k] for k in Cell.__dataclass_fields__ if k in line}
                cell = Cell(**fields)
                self.cells[(cell.row, cell.column)] = cell
                self.spent += cell.cost

    # -- numbers ------------------------------------------------------------------------

    def scores(self, column_id: str, rows: Sequence[str] | None = None) -> dict[str, float]:
        """Row id → score of the column's scored cells among `rows` (default: the shown rows)."""
        out = {}
        for rid in rows if rows is not None else self.rows():
            cell = self.cells.get((rid, column_id))
            if cell is not None and cell.score is not None:
                out[rid] = cell.score
        return out
