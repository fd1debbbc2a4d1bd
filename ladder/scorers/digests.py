"""Digests of the code that scores a stage's output (part of its run id): the task metric and every
scorer configured inside the stage, each by its source files (ladder/digests.py's code_digest)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ladder.digests import code_digest, path_digest


def scoring_digests(metric: Any, stage: Any) -> dict[str, str]:
    """Digest of the code that scores a stage's output, by where it is configured: the task metric
    ("metric") and every scorer or reward inside the stage's config (by key path, e.g. "scorer").
    A scorer `metric` is the task metric, already counted."""
    from pydantic import BaseModel

    from ladder.errors import ConfigError
    from ladder.config.judged import metric_class
    from ladder.scorers import scorer_class

    out = {"metric": _code_of(metric_class(metric.type), metric)}  # a gold metric, or a judge/classifier/pm

    def walk(obj: Any, path: str) -> None:
        if isinstance(obj, BaseModel):
            kind = getattr(obj, "type", None)
            if path and isinstance(kind, str) and kind != "metric":
                try:
                    out[path] = _code_of(scorer_class(kind), obj)
                except ConfigError:  # a `type:` that names no scorer (some other setting)
                    pass
                # A scorer's own local model (a classifier or PM folder, a judge's hf folder) by its
                # contents too: retrained in place, it is another scorer.
                model = getattr(obj, "model", None)
                name = model if isinstance(model, str) else getattr(model, "name", None)
                if isinstance(name, str) and name and Path(name).is_dir():
                    out[f"{path}.model"] = path_digest(name)
            for name in type(obj).model_fields:
                walk(getattr(obj, name), f"{path}.{name}" if path else name)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{path}.{i}")
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{path}.{k}")

    walk(stage, "")
    return out


def _code_of(cls: Any, config: Any) -> str:
    h = hashlib.sha256()
    # A duck-typed plugin (not a Metric subclass) has no scoring_code: its class's files stand in.
    for obj in getattr(cls, "scoring_code", lambda _: [cls])(config):
        h.update(code_digest(obj).encode())
    return h.hexdigest()
