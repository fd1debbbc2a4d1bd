"""Flat JSONL data files read without `datasets`.

Importing `datasets` (pandas, pyarrow, scipy come with it) and building a data set takes about a
second on a small CPU: most of a re-run that the results and the cache answer entirely
(scripts/bench_cache.py). The common data file — one flat object per line, each column of one
scalar type — is read here instead, giving exactly the rows `datasets.load_dataset("json", ...)`
gives: the same columns in the same order, the same Python values. Anything else — nested values,
a column mixing types (pyarrow would unify int and float), rows with different keys, blank lines,
bad JSON or UTF-8 — returns None, and the caller uses `datasets` (and its error handling) as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_INT64 = (-(2**63), 2**63 - 1)
_SCALARS = (str, bool, int, float)


def _no_constants(name: str) -> float:
    raise ValueError(name)  # NaN / Infinity: json accepts them, pyarrow does not


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    row = dict(pairs)
    if len(row) != len(pairs):
        raise ValueError("duplicate key")
    return row


def read_file(path: Path) -> list[dict[str, Any]] | None:
    """The rows of one flat JSONL file, or None when only `datasets` may read it."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    if not lines:
        return None
    rows: list[dict[str, Any]] = []
    keys: list[str] | None = None
    kinds: dict[str, type] = {}
    for line in lines:
        line = line.removesuffix("\r")
        if not line.strip():
            return None
        try:
            row = json.loads(line, parse_constant=_no_constants, object_pairs_hook=_unique_keys)
        except ValueError:
            return None
        if not isinstance(row, dict):
            return None
        if keys is None:
            keys = list(row)
            if not keys:
                return None
        elif len(row) != len(keys) or any(k not in row for k in keys):
            return None
        for k, v in row.items():
            if v is None:
                continue
            kind = type(v)
            if kind not in _SCALARS or (kind is int and not _INT64[0] <= v <= _INT64[1]):
                return None
            if kinds.setdefault(k, kind) is not kind:
                return None
        rows.append(row if list(row) == keys else {k: row[k] for k in keys})
    return rows


def read_splits(files: dict[str, Path]) -> dict[str, list[dict[str, Any]]] | None:
    """{split: rows} for {split: file}, or None when any file needs `datasets`."""
    out = {}
    for split, path in files.items():
        rows = read_file(path)
        if rows is None:
            return None
        out[split] = rows
    return out
