"""Reading an experiment: the YAML file, the `--set KEY=VALUE` items on top, then validation.

Everything that can be wrong with the file itself (missing, not UTF-8, malformed YAML, a key given
twice) is a ConfigError naming the file and line; what is wrong with its values is `validate`'s.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from ladder.config.experiment import Experiment
from ladder.config.prose import dotted_key
from ladder.config.validate import validate
from ladder.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as PyYAML reads it, except that `1e-3` and `2e5` are floats (YAML 1.1 wants a dot,
    `1.0e-3`, and reads them as strings, which strict float fields would then refuse)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> Experiment:
    """The experiment in the YAML file at `path`, with the `--set` items `overrides` applied."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", where=where,
                          fix="check the path; configs/quickstart.yaml is a working example") from None
    except UnicodeDecodeError as exc:
        if exc.object.startswith((b"\xff\xfe", b"\xfe\xff")):  # a UTF-16 byte-order mark
            raise ConfigError("UTF-16 text, not UTF-8", where=where,
                              fix=f"save it as UTF-8, e.g. iconv -f UTF-16 -t UTF-8 '{path.name}' > "
                                  f"'{path.stem}.utf8{path.suffix}'") from None
        raise ConfigError(f"not valid UTF-8 text (byte {exc.start})", where=where,
                          fix="save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file ({exc.strerror})", where=where) from None
    try:
        raw = _yaml(text)
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        problem = getattr(exc, "problem", None) or str(exc)
        start = getattr(exc, "context_mark", None)
        if getattr(exc, "context", None) and start is not None and (mark is None or start.line != mark.line):
            # The parser notices a missing ']' or quote lines later; where the construct began is
            # usually where the mistake is.
            problem = f"{problem}, {exc.context} that starts on line {start.line + 1}"
        fix = "indent with spaces: YAML does not allow tabs" if "'\\t'" in problem else \
            "check indentation, colons and quoting around that line"
        raise ConfigError(f"malformed YAML ({problem})", where=at, fix=fix) from None
    if not isinstance(raw, dict):
        raise ConfigError("the file must be a YAML mapping of keys to values", where=where,
                          fix="start from configs/quickstart.yaml")
    _no_duplicate_keys(root, where)
    raw.setdefault("name", path.stem)
    for item in overrides:
        try:
            apply_override(raw, item)
        except ConfigError as exc:
            raise ConfigError(exc.message, where=f"{where} (--set {item})", field=exc.field,
                              fix=exc.fix) from None
    return validate(raw, source=path, root=root, overrides=overrides)


def _no_duplicate_keys(node: Any, where: str, loc: tuple = ()) -> None:
    """YAML keeps the last of two equal keys and drops the first without a word: a second
    `stages:` or `generation:` further down would silently replace the first. Refuse instead."""
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first and key != "<<":
                raise ConfigError(f"key '{key}' appears twice (first on line {first[key]}); YAML would "
                                  f"silently keep only this one", where=f"{where}:{line}",
                                  field=dotted_key((*loc, key)), fix="merge the two into one key")
            first[key] = line
            _no_duplicate_keys(value_node, where, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_duplicate_keys(item, where, (*loc, i))


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `--set a.b.0.c=value` (value parsed as YAML) in place."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"'{item}' is not KEY=VALUE", fix="write e.g. --set subsample.n=500")
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"'{part}' is not an index of a list of {len(node)}", field=key,
                                  fix=f"use an index below {len(node)} (counting from 0), like stages.0.k")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"'{'.'.join(parts[:i])}' is a {type(node).__name__}, not a section "
                              f"with keys", field=key,
                              fix=f"set '{'.'.join(parts[:i])}' itself, or check the key path")
        if last:
            try:
                node[part] = _yaml(value) if value != "" else ""
            except yaml.YAMLError as exc:
                raise ConfigError(f"the value is not valid YAML ({getattr(exc, 'problem', None) or exc})",
                                  field=key,
                                  fix="quote it for the shell, e.g. --set 'task.choices=[yes, no]'") from None
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]
