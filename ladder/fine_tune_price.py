"""`ladder check`'s price of fine-tuning through OpenAI's API (an sft stage on the openai route).

Two amounts, both from ladder/data/prices.yaml: the job itself — its training tokens (every training
row's tokens, times the epochs) at the base model's `training` price — and the calls to the model it
makes, at the base model's `fine_tuned` prices (a fine-tuned gpt-4o-mini costs twice the base
model per token), for the sft stage's own evaluation and for every later stage that uses the model
through `from_stage`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ladder.backends.prices import PRICES, fine_tuned_name, model_entry, price_of, training_price
from ladder.errors import LadderError
from ladder.types import Message

TARGET_EPOCHS, MIN_TARGET_EXAMPLES, MAX_TARGET_EXAMPLES, MAX_DEFAULT_EPOCHS = 3, 100, 25_000, 25
"""OpenAI's `n_epochs: auto`, as its cookbook's data-preparation notebook states it (Chat_finetuning
_data_prep): 3 epochs, more for a small file (at least 100 examples trained, at most 25 epochs),
fewer for a large one (at most 25,000)."""


def auto_epochs(rows: int) -> int:
    """The epochs OpenAI's `auto` gives a training file of `rows` examples."""
    if rows * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // max(rows, 1))
    if rows * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(1, MAX_TARGET_EXAMPLES // rows)
    return TARGET_EPOCHS


def fine_tunes_on_openai(plan: Any, name: str) -> bool:
    """Whether stage `name` trains through OpenAI's fine-tuning API, as its class says
    (`Stage.fine_tunes_through_api`: sft's route openai, or auto on an OpenAI model)."""
    from ladder.registry import STAGES

    stage = next((s for s in plan.experiment.stages if s.name == name), None)
    return stage is not None and STAGES.get(stage.type).fine_tunes_through_api(stage, plan.configured[name].model)


def priced_as_fine_tuned(plan: Any, stage: Any, ctx: Any) -> Any:
    """The stage's planning context, its model priced as the fine-tuned model when the stage (an
    openai sft stage evaluates what it trained) or the stage its `from_stage` names fine-tunes on
    OpenAI; the context unchanged otherwise, or when the table has no fine-tuned price."""
    # A stage that fine-tunes evaluates what it trained; any other, what its `from_stage` trained.
    source = stage.name if fine_tunes_on_openai(plan, stage.name) else plan.configured[stage.name].from_stage
    if source is None or not fine_tunes_on_openai(plan, source):
        return ctx
    config = ctx.backend.config
    entry = model_entry(fine_tuned_name(config.name))
    if entry is None:
        return ctx
    price = price_of(entry)
    return replace(ctx, backend=plan.pool.get(config.model_copy(update={"price": price})))


def fine_tuning_cost(plan: Any, stage: Any, ctx: Any) -> dict[str, Any]:
    """{"fine_tuning": {tokens, epochs, cost_usd, text}} for an sft stage on OpenAI's API; {} for
    any other stage. The tokens are counted as the stage's other tokens are (the backend's count)."""
    if not fine_tunes_on_openai(plan, stage.name):
        return {}
    from ladder.progress import console
    from ladder.stages.sft import drawn_rows

    try:
        with console.capture():  # its train_subsample note is for a run (check prints the steps' own)
            rows, _, _ = drawn_rows(ctx, stage)
    except LadderError:  # a `data:` file an earlier stage writes (best_of_n's export): not there yet
        return {"fine_tuning": {"tokens": None, "epochs": None, "cost_usd": 0.0,
                                "text": f"{stage.name}: the fine-tuning job is not priced: it trains on {stage.data}, "
                                        f"which an earlier stage writes"}}
    backend = ctx.backend
    tokens = sum(backend.count_tokens([*r.prompt, Message("assistant", r.completion)]) for r in rows)
    epochs = int(stage.epochs) if stage.epochs else auto_epochs(len(rows))
    how = f"{epochs} epoch{'s' if epochs != 1 else ''}" + ("" if stage.epochs else " (auto: OpenAI's default "
                                                            f"for {len(rows):,} rows)")
    price = training_price(backend.config.name)
    tuned = model_entry(fine_tuned_name(backend.config.name))
    if price is None:
        return {"fine_tuning": {"tokens": tokens, "epochs": epochs, "cost_usd": 0.0,
                                "text": f"{stage.name}: the fine-tuning job ({tokens:,} training tokens × {how}) "
                                        f"is shown as $0: {PRICES.name} has no training price for "
                                        f"'{backend.config.name}'"}}
    cost = tokens * epochs * price / 1e6
    calls = (f"; the fine-tuned model's calls are priced at ${tuned['input']:g} / ${tuned['output']:g} per 1M "
             f"input / output tokens" if tuned else "")
    return {"fine_tuning": {"tokens": tokens, "epochs": epochs, "cost_usd": cost,
                            "text": f"{stage.name}: the fine-tuning job trains on {tokens:,} tokens × {how} at "
                                    f"${price:g} per 1M training tokens: ${cost:.4f} (in the stage's cost){calls}"}}
