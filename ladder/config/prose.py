"""Pydantic's validation errors → one-paragraph messages naming the file, line, key and fix.

A `ValidationError` lists what failed in pydantic's words ('Input should be a valid integer',
one error per union member tried). `ConfigSource.describe` turns each into the house format of
`ConfigError`: the line of the offending key in the YAML (or the `--set` item that set it), the
dotted key, what the field accepts in words and, as the fix, the field's own docstring.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ValidationError

from ladder.config.schema import looks_like_secret
from ladder.errors import ConfigError


@dataclass(frozen=True)
class ConfigSource:
    """Where the config being validated came from, which every message points into."""

    where: str
    """The file, as the user named it ('<config>' for a dict validated without one)."""
    root: Any = None
    """The file's YAML node tree, for line numbers; None without a file."""
    overrides: tuple[str, ...] = ()
    """The `--set` items applied on top of the file: an error in a key they set points at the
    command line, not at a line of the file that never held that value."""

    def error(self, loc: tuple, message: str, fix: str | None) -> str:
        """One rendered error about the key at `loc`."""
        dotted = dotted_key(loc)
        for item in self.overrides:
            key, _, value = item.partition("=")
            if looks_like_secret(value):
                item = f"{key}=<not shown>"  # a key pasted on the command line is not printed back
            if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
                return ConfigError(message, where=f"{self.where} (--set {item})", field=dotted, fix=fix).render()
        line = _line_of(self.root, loc) if self.root is not None else None
        return ConfigError(message, where=f"{self.where}:{line}" if line else self.where,
                           field=dotted, fix=fix).render()

    def describe(self, exc: ValidationError, cls: type[BaseModel], prefix: tuple) -> list[str]:
        """One rendered error per field that `cls` refused; `prefix` is where its section sits."""
        out = []
        by_field: dict[tuple, list[dict[str, Any]]] = {}
        booleans = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            kind = err["type"]
            if kind == "string_type" and isinstance(err.get("input"), bool) and loc and isinstance(loc[-1], int):
                booleans.append(err)  # `choices: [yes, no]`
            elif kind == "extra_forbidden":
                allowed = _allowed_keys(cls, loc)
                fix = "remove it or fix its spelling" + (
                    f" (allowed here: {', '.join(allowed)})" if allowed else "")
                out.append(self.error(prefix + loc, "unknown key", fix))
            elif kind == "missing":
                out.append(self.error(prefix + loc, "required key is missing", "add it"))
            elif "fix" in (err.get("ctx") or {}):  # our own PydanticCustomError, which brings its fix
                got = "" if err["ctx"].get("hide_input") else f" (got {err['input']!r})"
                out.append(self.error(prefix + loc, err["msg"] + got, err["ctx"]["fix"]))
            else:
                by_field.setdefault(_field_loc(cls, loc)[0], []).append(err)
        # A value that fits no member of a union fails once per member ('subsample.n.int',
        # "subsample.n.literal['all']"): say it once, as what the field accepts.
        for loc, errs in by_field.items():
            info = _field_loc(cls, loc)[1]
            got = errs[0].get("input")
            shown = repr(got) if len(repr(got)) <= 60 else type(got).__name__
            expected = _expected(info) if info is not None else None
            if len(errs) > 1 and expected:
                msg = f"must be {expected}"
            else:
                msg = re.sub(r"a valid dictionary or instance of \w+", "a mapping",
                             errs[0]["msg"].removeprefix("Value error, "))
            fix = _fix(loc, info, expected)
            said = _boolean_where_other(self, errs[0], loc, expected, prefix, fix)
            if said:
                out.append(self.error(prefix + loc, *said))
                continue
            if isinstance(got, str) and expected and "number" in expected and _NUMBER.fullmatch(got.strip()):
                fix = f"write the number without quotes ({loc[-1]}: {got.strip()}), which YAML reads as text"
            out.append(self.error(prefix + loc, f"{msg} (got {shown})", fix))
        return out + _yaml_booleans(self, booleans, prefix)


def dotted_key(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _line_of(root: Any, loc: tuple) -> int | None:
    """1-based line of the deepest YAML node along `loc` (the key itself when it exists)."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line if line else (node.start_mark.line + 1)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _allowed_keys(cls: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the model that `loc` (minus its last part) points into."""
    target: Any = cls
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(target, type) and issubclass(target, BaseModel)):
            return []
        field = target.model_fields.get(part)
        if field is None:
            return []
        target = _unwrap(field.annotation)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return list(target.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            inner = _unwrap(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return annotation


def _field_loc(cls: type[BaseModel], loc: tuple) -> tuple[tuple, Any]:
    """The error location without pydantic's union-member tag, and the field it ends at (or None).

    For a union field pydantic reports one error per member tried, the member's name appended to
    the location ('n', 'int'); everything from that tag on is cut."""
    target: Any = cls
    info = None
    for depth, part in enumerate(loc):
        if isinstance(part, int):
            continue
        if not (isinstance(target, type) and issubclass(target, BaseModel)):
            return loc, info
        info = target.model_fields.get(part)
        if info is None:
            return loc, None
        if len(_members(info.annotation)) > 1:
            return loc[:depth + 1], info
        target = _unwrap(info.annotation)
    return loc, info


def _members(annotation: Any) -> list[Any]:
    """The non-None members of a union (one item for anything else)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _kind(annotation: Any) -> str | None:
    """What a YAML value of this type looks like, in words; None when it says nothing useful."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        values = typing.get_args(annotation)
        return repr(values[0]) if len(values) == 1 else "one of " + ", ".join(repr(v) for v in values)
    if origin in (Union, types.UnionType):
        kinds = [_kind(a) for a in _members(annotation)]
        return " or ".join(kinds) if all(kinds) else None
    if origin is list:
        return "a list"
    if origin is dict or annotation is dict:
        return "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping"
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false"}.get(annotation)


def _expected(info: Any) -> str | None:
    """What the field accepts: its type and bounds, e.g. 'a whole number from 1 to 10,000'."""
    kind = _kind(info.annotation)
    if kind is None:
        return None
    bounds = {}
    for meta in info.metadata:
        for attr in ("ge", "gt", "le", "lt", "min_length", "max_length"):
            if getattr(meta, attr, None) is not None:
                bounds[attr] = getattr(meta, attr)
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le", bounds.get("lt"))
    if "ge" in bounds and "le" in bounds:
        kind += f" from {bounds['ge']:,} to {bounds['le']:,}"
    else:
        if low is not None:
            kind += f" {'at least' if 'ge' in bounds else 'above'} {low:,}"
        if high is not None:
            kind += f"{' and' if low is not None else ''} {'at most' if 'le' in bounds else 'below'} {high:,}"
    if "min_length" in bounds:
        kind += f" with at least {bounds['min_length']} item{'s' if bounds['min_length'] != 1 else ''}"
    if "max_length" in bounds:
        kind += f" with at most {bounds['max_length']} items"
    return kind


def _fix(loc: tuple, info: Any, expected: str | None) -> str:
    """The fix for a bad value: what the field takes and what it is for (its docstring)."""
    doc = " ".join((info.description or "").split()) if info is not None else ""
    doc = first_sentence(doc).rstrip(".")
    name = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    if expected and doc:
        return f"give {expected} ({name}: {doc[0].lower() + doc[1:]})"
    if expected:
        return f"give {expected}"
    return f"see what {name} takes: {doc}" if doc else \
        f"see the field's documentation: `ladder help {'.'.join(str(p) for p in loc if isinstance(p, str))}`, " \
        "or docs/reference.md"


_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_ABBREVIATION = re.compile(r"(?:^|[\s(])(?:e\.g|i\.e|etc|vs|cf|approx)\.$", re.IGNORECASE)


def first_sentence(text: str) -> str:
    """The first sentence of a docstring, whole: the period of 'e.g.' or 'i.e.', or one inside
    brackets or quotes ({0: a. b}, "no reward model yet."), does not end it."""
    depth, quoted = 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif (ch in ".!?" and not depth and not quoted and text[i + 1:i + 2] in ("", " ")
              and not _ABBREVIATION.search(text[:i + 1])):
            return text[:i + 1]
    return text


def _node_at(root: Any, loc: tuple) -> Any:
    """The YAML node at `loc`, or None when the file does not hold it (defaults, --set)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return None
    return node


def _as_written(src: ConfigSource, loc: tuple, value: Any) -> str:
    """How the user wrote a value: the YAML text when the file has it (`yes`), else YAML's form."""
    node = _node_at(src.root, loc) if src.root is not None else None
    if isinstance(node, yaml.ScalarNode) and not src.overrides:
        return node.value
    return str(value).lower() if isinstance(value, bool) else str(value)


def _yaml_booleans(src: ConfigSource, errors: list[dict[str, Any]], prefix: tuple) -> list[str]:
    """Messages for text items that YAML read as booleans (`choices: [yes, no]`), one per list: the
    plain 'Input should be a valid string (got True)' hides that `yes` was never text."""
    out = []
    by_list: dict[tuple, list[tuple[int, bool]]] = {}
    for err in errors:
        loc = tuple(err["loc"])
        by_list.setdefault(loc[:-1], []).append((loc[-1], err["input"]))
    for loc, items in by_list.items():
        written = [_as_written(src, prefix + loc + (i,), v) for i, v in items]
        values = [str(v).lower() for _, v in items]
        node = _node_at(src.root, prefix + loc) if src.root is not None else None
        every = [n.value for n in node.value] if isinstance(node, yaml.SequenceNode) and \
            all(isinstance(n, yaml.ScalarNode) for n in node.value) else written
        quoted = ", ".join(f'"{w}"' for w in every)
        name = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
        plural = len(items) > 1
        out.append(src.error(prefix + loc,
                        f"YAML read {', '.join(written)} as {'booleans' if plural else 'a boolean'} "
                        f"({', '.join(values)}), not text: unquoted yes, no, on, off, true and false "
                        f"are booleans in YAML",
                        f"quote {'them' if plural else 'it'}: {name}: [{quoted}]"))
    return out


def _boolean_where_other(src: ConfigSource, err: dict[str, Any], loc: tuple, expected: str | None,
                         prefix: tuple, fix: str) -> tuple[str, str] | None:
    """(message, fix) for a YAML boolean given to a number or text field (`max_tokens: yes`)."""
    got = err.get("input")
    if not isinstance(got, bool):
        return None
    written = _as_written(src, prefix + loc, got)
    name = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    said = f"YAML read {written} as the boolean {str(got).lower()}"
    if expected and "number" not in expected and "text" in expected:
        return f"{said}, not text", f'quote it: {name}: "{written}"'
    return f"{said}, not {expected or 'a value of this type'}", fix
