"""The Backend contract and the cache that wraps every backend.

A backend implements two uncached primitives:

- `sample(jobs, gen, on_done)`: for each Job (a prompt and the sample indices still missing),
  produce one Sample per index and report it through `on_done(job_number, samples)` as soon as
  that job is finished — so the cache can commit it before the next one (a killed run then
  resumes from the last finished job, not the last finished batch). A backend that gets a job's
  samples from separate calls may report them piecewise: `on_done(job_number, samples, indices)`.
  A backend whose reports arrive in bursts (the API backends: many responses in one turn of the
  event loop) hands them over together with `report_all(on_done, reports)`: the cache commits
  them in one transaction instead of one each.
- `continuation_logprobs(prompts, continuations)`: summed log-probability of each continuation.

`generate()` and `logprobs()` below put the cache around them: keys are per sample index, so
asking for N=16 after N=8 computes only the 8 new samples, and errors are never cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ladder.cache import Cache, cache_key
from ladder.config import GenerationConfig, Section
from ladder.types import Message, Sample


class BackendConfig(Section):
    backend: str
    """Which backend: hf, openai, anthropic (or a 'module:attr' plugin)."""
    name: str
    """Model: a hub id or local path (hf), or the provider's model name."""
    from_stage: str | None = None
    """Use the model an earlier stage produced (e.g. `from_stage: sft`); it replaces `name`."""


@dataclass(frozen=True)
class Job:
    messages: tuple[Message, ...]
    indices: tuple[int, ...]


@dataclass
class CallStats:
    """How much of a stage came from the cache; printed after each stage."""

    cached: int = 0
    generated: int = 0
    errors: int = 0


class Backend:
    """Base class: subclasses set `Config` and implement `sample` (and, where the model exposes
    them, `continuation_logprobs` and `count_tokens`)."""

    Config: type[BackendConfig] = BackendConfig
    supports_logprobs = False
    #: True for a policy trained by the rl stage: its token probabilities are not calibrated.
    rl_policy = False
    #: Where a backend keeps state a re-run must find (batch job ids): generate() sets it to the
    #: cache folder.
    state_dir: Path | None = None
    provider = ""
    """The API provider whose price list and batch API the backend uses ("openai", "anthropic");
    "" for a backend with none (local models)."""
    down: str | None = None
    """Why this model's server counts as down in this run (it failed many requests in a row after
    all retries), or None: later stages on the same model send nothing and say so."""

    planning = False
    """Set on the backends of `ladder check`'s pool: nothing billed is sent, so a missing API key is
    recorded in `missing_key` rather than raised by `preflight()`."""
    missing_key: str | None = None
    """The environment variable a planning backend's key should be in but is not (see `planning`)."""

    def __init__(self, config: BackendConfig):
        self.config = config

    @property
    def fingerprint(self) -> str:
        """Identity of the model for cache keys; local backends add a hash of the weights."""
        return self.config.name

    def preflight(self) -> None:
        """Fail fast, before anything is written: bad model name, missing key."""

    def check_generation(self, gen: GenerationConfig) -> None:
        """Raise LadderError for generation settings this backend cannot honour (before the run)."""

    def probe(self) -> None:
        """Just before a run that will call the model: one cheap live check (a remote API: is the
        server there, is the key accepted). Raise LadderError when it shows no call can work."""

    def sent_sampling(self, gen: GenerationConfig) -> dict[str, float] | None:
        """The sampling arguments requests really carry, when the backend sends only some of
        temperature/top_p (recorded in metrics.json); None when it honours both as configured."""
        return None

    def rate_controller(self) -> Any | None:
        """The live rate controller this model's requests go through (concurrency over time and
        429s, shown on the progress line and recorded in metrics.json's stats.rate_control), or
        None: a local model, or an API model sent through its provider's batch API."""
        return None

    def price(self) -> Any | None:
        """The model's prices (a ladder.backends.prices.Price: USD per 1M input, output and cached
        input tokens), from the config's `price:` or ladder/data/prices.yaml; None for a model
        nobody bills (local models). `ladder check` reads it for the prompt-cache discount."""
        return None

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """US dollars for that many tokens; 0 for local models."""
        return 0.0

    def prompt_copies(self, n: int) -> int:
        """How many times a prompt is processed (and paid for) to draw n samples: n, unless one
        request returns several samples (OpenAI's `n`)."""
        return n

    @property
    def context_window(self) -> int | None:
        return None

    def count_tokens(self, messages: Sequence[Message]) -> int:
        # A rough count (4 characters a token) for backends without a local tokenizer.
        return sum(len(m.content) for m in messages) // 4 + 4 * len(messages)

    def sample(self, jobs: list[Job], gen: GenerationConfig,
               on_done: Callable[[int, list[Sample]], None]) -> None:
        raise NotImplementedError

    def continuation_logprobs(self, prompts: list[Sequence[Message]],
                              continuations: list[str]) -> list[float]:
        raise NotImplementedError(f"backend '{self.config.backend}' does not give log-probabilities")

    def continuation_token_counts(self, continuations: list[str]) -> list[int]:
        """Tokens in each continuation, as continuation_logprobs sums them (choice_prob's
        normalize: tokens)."""
        raise NotImplementedError(f"backend '{self.config.backend}' does not count continuation tokens")

    def close(self) -> None:
        pass


def _request_payload(backend: Backend, messages: Sequence[Message], gen: GenerationConfig) -> dict[str, Any]:
    return {
        "backend": backend.config.backend,
        "model": backend.fingerprint,
        "messages": [m.to_dict() for m in messages],
        "temperature": gen.temperature,
        "top_p": gen.top_p,
        "max_tokens": gen.max_tokens,
        "stop": list(gen.stop),
        "seed": gen.seed,
    }


def generate(backend: Backend, cache: Cache, prompts: list[Sequence[Message]], gen: GenerationConfig,
             stats: CallStats | None = None,
             on_prompt_done: Callable[[int, list[Sample]], None] | None = None) -> list[list[Sample]]:
    """gen.n samples for each prompt, from the cache where possible; errors come back as
    Samples with finish_reason "error" and are not cached. `on_prompt_done(p, samples)` fires as
    soon as prompt p has all its samples, so callers can record results while others run."""
    stats = stats if stats is not None else CallStats()
    keys = []
    for messages in prompts:
        base = _request_payload(backend, messages, gen)
        keys.append([cache_key({**base, "index": i}) for i in range(gen.n)])
    found = cache.get_many(k for row in keys for k in row)

    results: list[list[Sample | None]] = [[None] * gen.n for _ in prompts]
    jobs: list[Job] = []
    owners: list[int] = []
    for p, row in enumerate(keys):
        missing = []
        for i, key in enumerate(row):
            if key in found:
                results[p][i] = Sample.from_dict(found[key])
            else:
                missing.append(i)
        stats.cached += gen.n - len(missing)
        if missing:
            jobs.append(Job(tuple(prompts[p]), tuple(missing)))
            owners.append(p)
        elif on_prompt_done:
            on_prompt_done(p, results[p])

    def record(j: int, samples: list[Sample], indices: Sequence[int] | None, fresh: dict[str, Any],
               finished: list[int]) -> None:
        p, job = owners[j], jobs[j]
        for i, sample in zip(job.indices if indices is None else indices, samples):
            results[p][i] = sample
            if sample.finish_reason == "error":
                stats.errors += 1
            else:
                stats.generated += 1
                fresh[keys[p][i]] = sample.to_dict()
        if on_prompt_done and all(s is not None for s in results[p]):
            finished.append(p)

    def on_done(j: int, samples: list[Sample], indices: Sequence[int] | None = None) -> None:
        many([(j, samples, indices)])

    def many(reports: Sequence[tuple[int, list[Sample], Sequence[int] | None]]) -> None:
        # One commit for all of them, then the callbacks: a prompt is reported done once cached.
        fresh: dict[str, Any] = {}
        finished: list[int] = []
        for j, samples, indices in reports:
            record(j, samples, indices, fresh, finished)
        cache.put_many(fresh)
        for p in finished:
            on_prompt_done(p, results[p])  # type: ignore[misc]  (finished is empty without it)

    on_done.many = many  # type: ignore[attr-defined]  (read by report_all)

    if jobs:
        backend.state_dir = getattr(cache, "folder", None)
        backend.sample(jobs, gen, on_done)
    missing = [p for p, row in enumerate(results) if any(s is None for s in row)]
    if missing:  # a backend bug, not a user error: say which prompts were never answered
        raise RuntimeError(f"backend {backend.config.backend} returned no sample for prompts {missing[:5]}")
    return results  # type: ignore[return-value]


def report_all(on_done: Callable[..., None], reports: Sequence[tuple[int, list[Sample], Sequence[int] | None]]) -> None:
    """Hand several `(job_number, samples, indices)` reports to `on_done` at once: generate()'s
    on_done commits them to the cache in one transaction; any other callable gets them one by one."""
    many = getattr(on_done, "many", None)
    if many is not None:
        many(reports)
        return
    for j, samples, indices in reports:
        on_done(j, samples, indices)


def shifted(on_done: Callable[..., None], by: int) -> Callable[..., None]:
    """`on_done` for a sample() call whose job numbers start at `by` (its `many` shifted too)."""
    def shift(j: int, *rest: Any) -> None:
        on_done(j + by, *rest)

    many = getattr(on_done, "many", None)
    if many is not None:
        shift.many = lambda reports: many([(j + by, *rest) for j, *rest in reports])  # type: ignore[attr-defined]
    return shift


def logprobs(backend: Backend, cache: Cache, prompts: list[Sequence[Message]],
             continuations: list[str]) -> list[float]:
    """Cached summed log-probabilities of `continuations` given `prompts`."""
    keys = [cache_key({"backend": backend.config.backend, "model": backend.fingerprint,
                       "messages": [m.to_dict() for m in p], "continuation": c, "kind": "logprob"})
            for p, c in zip(prompts, continuations)]
    found = cache.get_many(keys)
    todo = [i for i, k in enumerate(keys) if k not in found]
    if todo:
        values = backend.continuation_logprobs([prompts[i] for i in todo], [continuations[i] for i in todo])
        cache.put_many({keys[i]: v for i, v in zip(todo, values)})
        found.update({keys[i]: v for i, v in zip(todo, values)})
    return [found[k] for k in keys]


@dataclass
class BackendPool:
    """One loaded instance per distinct model config: stages that share a model share weights."""

    instances: dict[str, Backend] = field(default_factory=dict)
    planning: bool = False
    """`ladder check`'s pool: its backends are `planning` (a missing key is recorded, not raised)."""

    def get(self, config: BackendConfig) -> Backend:
        from ladder.registry import BACKENDS

        key = config.model_dump_json()
        if key not in self.instances:
            self.instances[key] = backend = BACKENDS.get(config.backend)(config)
            backend.planning = self.planning
        return self.instances[key]

    def close(self) -> None:
        for backend in self.instances.values():
            backend.close()
        self.instances.clear()
