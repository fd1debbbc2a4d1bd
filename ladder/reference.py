"""The config reference, written from the pydantic models: every field's type, default and the
docstring under it — documented once, in code.

    python scripts/gen_reference.py          # rewrites docs/reference.md
    ladder help task.target                  # one field's entry in the terminal

tests/test_reference.py fails when docs/reference.md differs from what this writes.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Any, Iterator

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ladder.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    path: str
    """Dotted key as the YAML and `--set` write it (`stages[type=sft].learning_rate`)."""
    type: str
    default: str
    doc: str


def sections() -> list[tuple[str, str, type[BaseModel]]]:
    """(title, key prefix, model) for every section of an experiment YAML, the registries' built-ins
    included: each stage type, metric type, scorer type and backend."""
    from ladder.config.schema import ExperimentConfig
    from ladder.registry import BACKENDS, METRICS, STAGES
    from ladder.scorers import SCORERS

    out: list[tuple[str, str, type[BaseModel]]] = [("Experiment", "", ExperimentConfig)]
    for title, registry, prefix in (("Stage", STAGES, "stages[type={}]"), ("Metric", METRICS, "metric[type={}]"),
                                    ("Scorer", SCORERS, "scorer[type={}]"), ("Backend", BACKENDS, "model[backend={}]")):
        for name in sorted(registry._targets):  # the built-ins: plugins document themselves
            config = getattr(registry.get(name), "Config", None)
            if isinstance(config, type) and issubclass(config, BaseModel):
                out.append((f"{title} `{name}`", prefix.format(name), config))
    return out


def entries(model: type[BaseModel], prefix: str = "", seen: frozenset[type] = frozenset()) -> Iterator[Entry]:
    """Every field of `model`, nested sections expanded in place."""
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        nested = _section(info.annotation)
        if info.default is PydanticUndefined and info.default_factory is None:
            default = "required"
        elif info.default_factory is not None:
            default = _show(info.default_factory())
        else:
            default = _show(info.default)
        yield Entry(path, _type_name(info.annotation), default, " ".join((info.description or "").split()))
        if nested is not None and nested not in seen:
            yield from entries(nested, path, seen | {nested})


def _section(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    text = text or str(annotation)
    text = re.sub(r"typing\.|ladder\.[\w.]+\.|<class '([^']+)'>", lambda m: m.group(1) or "", text)
    text = re.sub(r"Annotated\[([^,\]]+),[^\]]*\]", r"\1", text)
    return text.replace("NoneType", "None").replace("Literal", "one of ")


def _show(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "{…}"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value) if value else "''"
    return str(value)


def render() -> str:
    """docs/reference.md."""
    lines = ["# Config reference", "",
             "Every key an experiment YAML takes: its type, its default and what it means. Written by",
             "`python scripts/gen_reference.py` from the pydantic models in ladder/ — do not edit by hand;",
             "`ladder help KEY` prints one entry. Unknown keys are an error.", ""]
    for title, prefix, model in sections():
        lines += [f"## {title}", ""]
        if model.__doc__ and title != "Experiment":
            lines += [" ".join(model.__doc__.split()), ""]
        lines += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for e in entries(model, prefix):
            lines.append(f"| `{e.path}` | {_cell(e.type)} | {_cell(e.default)} | {_cell(e.doc)} |")
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "—"


def explain(key: str) -> list[Entry]:
    """The entries whose dotted key is `key` or ends with it (`learning_rate` finds every stage's)."""
    key = key.strip().strip(".")
    found = []
    for _, prefix, model in sections():
        for e in entries(model, prefix):
            bare = re.sub(r"\[[^\]]*\]", "", e.path)
            if key in (e.path, bare) or bare.endswith("." + key) or e.path.endswith("." + key):
                found.append(e)
    if not found:
        raise ConfigError(f"no config key '{key}'", field="KEY",
                          fix="give a key as the YAML writes it, e.g. task.target, generation.max_tokens or "
                              "learning_rate (docs/reference.md lists them all)")
    return found
