"""Hand-off: a playground column written into the experiment YAML as a named `variants:` entry.

The entry holds the column's instruction, template, model (when not the experiment's), generation
settings (those that differ) and its one prompting rung — `stages: [{type: zero_shot}]`, or
`[{type: few_shot, examples: [...]}]` with the pinned shots — so `ladder run exp.yaml --variant
NAME` evaluates exactly the column's prompts at full n (on the playground's rows: the same
requests, so the same numbers).

The file is edited as text, never re-dumped, so its comments and layout stay: the entry is one
line of flow YAML (JSON, which YAML reads) added at the end of the `variants:` block, or a new
block (`base: {}` first, so the experiment as written stays a variant and the baseline) at the end
of the file. The result is parsed back and must hold exactly the intended entry; a file changed on
disk since the playground opened it is refused. Either refusal writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from ladder.errors import ConfigError
from ladder.store import atomic_write

_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def overrides(pg: Any, col: Any) -> dict[str, Any]:
    """The variant's dotted-key overrides for column `col` of playground `pg`."""
    out: dict[str, Any] = {"task.instruction": col.instruction, "task.template": col.template}
    if col.model != pg.model_spec():
        out["model"] = col.model
    base = pg.exp.config.generation.model_dump()
    for key, value in col.generation.items():
        if base.get(key) != value:
            out[f"generation.{key}"] = value
    out["stages"] = ([{"type": "few_shot", "examples": pg.shot_rows(col)}] if col.shots
                     else [{"type": "zero_shot"}])
    return out


def save(path: Path, name: str, entry: dict[str, Any], opened: str | None = None) -> None:
    """Add `name: entry` under `variants:` in the YAML at `path`. `opened`: the file's digest when
    the playground read it; a different one now means someone else edited it, and nothing is written."""
    where = str(path)
    if not _NAME.fullmatch(name):
        raise ConfigError(f"'{name}' cannot name a variant", where=where, field="variants",
                          fix="use letters, digits, _ . + - (it becomes a folder name)")
    if opened is not None and digest(path) != opened:
        raise ConfigError("the YAML changed on disk since the playground opened it, so saving the variant "
                          "could undo that edit; nothing was written", where=where, field="variants",
                          fix="restart `ladder play` / rerun `ladder try` to read the file as it is now, then save again")
    text = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    variants = raw.get("variants")
    if isinstance(variants, dict) and name in variants:
        raise ConfigError(f"the YAML already has a variant named '{name}'", where=where, field=f"variants.{name}",
                          fix="choose another name (or delete that entry first)")
    line = f"  {name}: {json.dumps(entry, ensure_ascii=False)}\n"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    head = next((i for i, ln in enumerate(lines) if re.match(r"variants:\s*(#.*)?$", ln)), None)
    if head is not None:
        end = head + 1  # the block runs while lines are indented (or blank / comments inside it)
        last = head
        while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end].strip()):
            if lines[end].strip():
                last = end
            end += 1
        new = lines[:last + 1] + [line] + lines[last + 1:]
    elif variants is None and not any(re.match(r"variants\s*:", ln) for ln in lines):
        new = lines + ["variants:                 # written by the playground (`ladder play` / `ladder try --save-variant`)\n",
                       "  base: {}\n", line]
    else:
        new = None
    out = "".join(new) if new else ""
    try:
        back = yaml.safe_load(out) if new else None
    except yaml.YAMLError:
        back = None
    want = {**(variants if isinstance(variants, dict) else {"base": {}}), name: entry}
    if not back or back.get("variants") != want or {k: v for k, v in back.items() if k != "variants"} != \
            {k: v for k, v in raw.items() if k != "variants"}:
        raise ConfigError("could not add the variant to this file's `variants:` section as text (it is written "
                          "in flow style or an unusual layout); nothing was written", where=where, field="variants",
                          fix=f"add it by hand: under `variants:` write  {line.strip()}")
    atomic_write(path, out)
