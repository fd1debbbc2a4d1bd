"""A second model in the loop (red-teaming): the metric scores a respondent's reply to each completion.

`respondent: {model: {...}, template: "{completion}", instruction: ...}` (experiment level, or a
stage's own): every completion of the rung's model is sent to this second model, and the task metric
(and a best_of_n scorer, an rl reward, the `metrics:` columns) scores its reply. The rungs sample and
train the first model — the attacker — against the fixed respondent — the target (Perez et al.
2022, "Red Teaming Language Models with Language Models").

- A plain metric (python, regex, includes, ...) reads the reply as its completion. A scorer with a
  template (judge, classifier, pm) reads `{response}` for the reply and `{completion}` for the rung
  model's output; its default template reads the reply (a judge's shows both).
- The respondent's calls go through the model-call cache (the key is the request: the completion and
  the respondent's model and sampling), so a re-run asks nothing twice; each call's cost and tokens
  are added to the first score that asked it, so the row's cost counts them (metric_cost_usd).
- samples.jsonl keeps both texts: the sample's `text` and its `score_meta.response`.
- A failed respondent call is no reply: the example is an error, retried on re-run.

The config checks ({response} without a respondent) are ladder/config/redteam.py's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence

from ladder.backends.base import CallStats, generate
from ladder.metrics import Metric
from ladder.types import Example, Message, Score

if TYPE_CHECKING:
    from ladder.stages import StageContext

JUDGE_TEMPLATE = ("Criteria: {criteria}\n\n[Message]\n{completion}\n\n[Reply to the message]\n{response}\n\n"
                  "{question}")
"""A judge's default template with a respondent: the reply is judged, with the message it answers."""
DEFAULT_TEMPLATES = {"judge": JUDGE_TEMPLATE, "classifier": "{response}",
                     "pm": "Human: {completion}\n\nAssistant: {response}"}
"""Each templated scorer's default input with a respondent: what reads the reply."""


@dataclass
class Reply:
    text: str
    spent: dict[str, float]
    """The call's cost_usd and tokens, on the first score that asked it (empty on repeats)."""
    error: str | None = None


class Respondent:
    """The respondent of one stage: its backend, cache and call counts, and the replies it gave."""

    def __init__(self, config: Any, ctx: StageContext, preflight: bool = True):
        from ladder.backends.base import BackendPool
        from ladder.config import backend_config

        from ladder.scorers import check_template

        self.config = config
        self.task = ctx.task
        check_template(config.template, ctx, "respondent.template")  # before any call is paid for
        pool = ctx.pool if ctx.pool is not None else BackendPool()
        self.backend = pool.get(backend_config(ctx.experiment.model.model_dump(), config.model))
        if preflight:
            self.backend.preflight()
        self.cache = ctx.cache
        self.calls = CallStats()
        self.charged: set[tuple[Message, ...]] = set()
        """Asks whose cost a score carries already: the metric and the `metrics:` columns of one
        stage read the same replies, and the row pays for each once."""

    def messages(self, ex: Example, completion: str) -> tuple[Message, ...]:
        prompt = "\n\n".join(m.content for m in self.task.render(ex))
        user = self.config.template.format_map({**ex.fields, "target": ex.target, "prompt": prompt,
                                                "completion": completion})
        system = (Message("system", self.config.instruction),) if self.config.instruction else ()
        return (*system, Message("user", user))

    def reply(self, examples: Sequence[Example], completions: Sequence[str]) -> list[Reply]:
        asks = [self.messages(ex, c) for ex, c in zip(examples, completions)]
        unique = list(dict.fromkeys(asks))
        answers = generate(self.backend, self.cache, [list(m) for m in unique], self.config.generation,
                           self.calls) if unique else []
        got = {}
        for ask, samples in zip(unique, answers):
            s = samples[0]
            spent = {} if ask in self.charged else {
                "cost_usd": sum(x.cost for x in samples), "prompt_tokens": sum(x.prompt_tokens for x in samples),
                "completion_tokens": sum(x.completion_tokens for x in samples)}
            if s.finish_reason != "error":  # a failed ask is not cached: its retry pays, and says so
                self.charged.add(ask)
            error = f"the respondent call failed after all retries ({s.error})" if s.finish_reason == "error" else None
            got[ask] = Reply(s.text, spent, error)
        out = []
        for ask in asks:
            r = got[ask]
            out.append(r)
            got[ask] = replace(r, spent={})  # a repeat within the batch asked nothing
        return out


class Responded(Metric):
    """A metric (or scorer) that scores the respondent's reply to each completion."""

    batched = True  # a model call per completion: scored many at a time, its meta kept
    needs_probabilities = False

    def __init__(self, inner: Metric, respondent: Respondent):
        self.inner = inner
        self.respondent = respondent
        self.templated = False
        kind = getattr(inner.config, "type", None)
        template = getattr(inner.config, "template", None)
        if kind in DEFAULT_TEMPLATES and hasattr(inner, "fill"):
            self.templated = True
            default = type(inner.config).model_fields["template"].default
            if template is None or template == default:  # the default reads the reply
                self.inner = copy.copy(inner)  # the backend, cache and call counts are shared
                self.inner.config = inner.config.model_copy(update={"template": DEFAULT_TEMPLATES[kind]})
                if hasattr(self.inner, "template"):
                    self.inner.template = DEFAULT_TEMPLATES[kind]
        super().__init__(self.inner.config)
        self.extracts = inner.extracts
        self.calls = getattr(inner, "calls", None)

    @property
    def name(self) -> str:
        return self.inner.name

    def __getattr__(self, key: str) -> Any:  # what stages read of a scorer (cost_usd, backend, ...)
        if key in ("inner", "respondent"):
            raise AttributeError(key)
        return getattr(self.inner, key)

    def score(self, ex: Example, completion: str) -> Score:
        return self.score_batch([ex], [completion])[0]

    def also_responding(self, scorer: Metric) -> Metric:
        """A best_of_n scorer or rl reward of this stage (build_scorer asks): it scores the reply too."""
        return scorer if isinstance(scorer, Responded) else Responded(scorer, self.respondent)

    def score_batch(self, examples: Sequence[Example], completions: Sequence[str]) -> list[Score]:
        replies = self.respondent.reply(examples, completions)
        ok = [i for i, r in enumerate(replies) if r.error is None]
        if self.templated:  # {completion}: the rung model's output; {response}: the reply
            scored = self.inner.score_batch(
                [replace(examples[i], fields={**examples[i].fields, "response": replies[i].text}) for i in ok],
                [completions[i] for i in ok])
        else:
            scored = self.inner.score_batch([examples[i] for i in ok], [replies[i].text for i in ok])
        by_index = dict(zip(ok, scored))
        out = []
        for i, r in enumerate(replies):
            if r.error is not None:
                out.append(Score(0.0, meta={"response": None, **r.spent}, error=r.error))
                continue
            score = by_index[i]
            meta = {**score.meta, "response": r.text}
            for k, v in r.spent.items():  # the reply's cost beside the judge's, summed into the row
                meta[k] = meta.get(k, 0) + v
            out.append(Score(score.value, score.extracted, meta, score.error))
        return out


def respondent_of(ctx: StageContext) -> Any:
    """The stage's respondent config, or None."""
    return ctx.experiment.stage_respondent(ctx.stage)


def with_respondent(ctx: StageContext, preflight: bool = True) -> None:
    """The stage's metrics wrapped to score the respondent's reply (nothing when it has none). One
    Respondent per stage: the metric and the `metrics:` columns read the same replies."""
    config = respondent_of(ctx)
    if config is None or isinstance(ctx.metric, Responded):
        return
    respondent = Respondent(config, ctx, preflight=preflight and ctx.cache is not None)
    ctx.metric = Responded(ctx.metric, respondent)
    ctx.extra_metrics = {k: Responded(m, respondent) for k, m in ctx.extra_metrics.items()}


def run_id_part(exp: Any, stage: Any, fingerprint: Any, code_digest: Any) -> dict[str, Any]:
    """What a stage with a respondent adds to its run id: the respondent's config and its model's
    fingerprint (another target is another experiment), and this module's code (`code_digest`,
    ladder.digests's: passed in, as that module imports the scorers, which import this one).
    Empty otherwise, so no other run id changes."""
    config = exp.stage_respondent(stage)
    if config is None:
        return {}
    from ladder.config import backend_config

    model = backend_config(exp.model.model_dump(), config.model)
    return {"respondent": {**config.model_dump(mode="json"), "model": model.model_dump(mode="json"),
                           "fingerprint": fingerprint(model)},
            "respondent_code": code_digest(Responded)}


def respondent_models(exp: Any, stage: Any) -> list[tuple[str, Any]]:
    """(field prefix, backend config) of the stage's respondent, for the probes before a run."""
    config = exp.stage_respondent(stage)
    if config is None:
        return []
    from ladder.config import backend_config

    where = f"stages.{stage.name}.respondent." if getattr(stage, "respondent", None) else "respondent."
    return [(where, backend_config(exp.model.model_dump(), config.model))]


def respondent_estimate(ctx: StageContext, examples: Sequence[Example], calls: int,
                        completion_tokens: int) -> dict[str, Any] | None:
    """For `ladder check`: what `calls` respondent calls cost at most (one per sample scored), each
    prompt counted with an empty completion plus `completion_tokens` for it."""
    config = respondent_of(ctx)
    if config is None:
        return None
    from ladder.backends.batch import check_costs

    respondent = Respondent(config, ctx, preflight=False)
    sample = list(examples[:200])
    per_call = (sum(respondent.backend.count_tokens(respondent.messages(ex, "")) for ex in sample) / len(sample)
                if sample else 0) + completion_tokens
    gen = config.generation
    prompt_tokens = round(per_call * calls) * respondent.backend.prompt_copies(gen.n)
    output = calls * gen.n * gen.max_tokens
    costs = check_costs(respondent.backend, respondent.backend.estimate_cost(prompt_tokens, output))
    return {"scorer": f"respondent ({respondent.backend.config.name})", "calls": calls,
            "prompt_tokens": prompt_tokens, "max_output_tokens": output, **costs}
