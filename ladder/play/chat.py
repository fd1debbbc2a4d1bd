"""Chat mode: a free multi-turn conversation with several models side by side, each in its own
thread (the same user turns, its own earlier answers), through the playground's cache, budget and
session log."""

from __future__ import annotations

import json
import threading
from typing import Any

from ladder.errors import LadderError
from ladder.play.core import Column, Playground, model_label
from ladder.types import Message


def chat(pg: Playground, system: str, turns: list[list[dict[str, str]]], models: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The next reply of each model in its own conversation (system prompt + `turns[i]`, its
    own earlier answers among them), side by side, through the same cache; a model that fails
    gets its error, the others still answer."""
    from ladder.backends.base import generate

    got: list[dict[str, Any]] = [{} for _ in models]

    def one(i: int, spec: dict[str, Any], history: list[dict[str, str]]) -> None:
        replies = got[i]
        messages = ([Message("system", system)] if system else []) + [Message(t["role"], t["content"]) for t in history]
        col = Column(system, "", spec)
        label = model_label(spec)
        try:
            backend = pg.backend(col)
            gen = pg.generation(col).model_copy(update={"n": 1})
            pg.check_budget(backend, [messages], gen)
            with pg._model_locks[json.dumps(col.model, sort_keys=True)]:
                (sample,), = generate(backend, pg.cache, [messages], gen)
            if sample.finish_reason == "error":
                replies[label] = {"error": sample.error or "the call failed"}
            else:
                with pg._lock:
                    pg.spent += sample.cost
                replies[label] = {"text": sample.text, "cost": sample.cost}
        except Exception as exc:
            replies[label] = {"error": exc.render() if isinstance(exc, LadderError) else f"{type(exc).__name__}: {exc}"}

    threads = [threading.Thread(target=one, args=(i, spec, history))
               for i, (spec, history) in enumerate(zip(models, turns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    replies = {k: v for reply in got for k, v in reply.items()}  # in the models' order
    pg.log.write({"kind": "chat", "system": system, "turns": turns, "replies": replies})
    return replies
