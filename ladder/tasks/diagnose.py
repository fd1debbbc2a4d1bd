"""What is wrong with a data file the loader refused, down to the line: encoding (UTF-16, not
UTF-8), malformed or duplicate-key JSON lines, empty files. Runs only after a failure, so a good
file is read once, by datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def diagnose(path: Path) -> tuple[str, str] | None:
    """(problem, fix) for a local text data file the loader refused, down to the line; None when
    nothing is found here. Only runs after a failure, so a good file is read once, by datasets."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".tsv") or not path.is_file():
        return None
    data = path.read_bytes()
    utf16 = _utf16(data)
    if utf16:
        return (f"is {utf16} text, not UTF-8",
                f"convert it: iconv -f {utf16} -t UTF-8 '{path.name}' > '{path.stem}.utf8{path.suffix}' "
                f"(or save it as UTF-8 from your editor) and point task.data at the new file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return (f"is not valid UTF-8: line {line} has byte 0x{data[exc.start]:02x}",
                "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8), or fix that line")
    if not text.strip():
        return "has no rows (only blank lines)", "point task.data at a file with at least one row"
    if suffix == ".jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as exc:
                return (f"line {i} is not valid JSON ({exc.msg} at column {exc.colno})",
                        "fix or delete that line: each line of a .jsonl file is one JSON object")
            except _DuplicateKey as exc:
                return (f"line {i} has the key \"{exc.key}\" twice (a JSON reader keeps only one of "
                        f"the two values, without a word)",
                        "keep one value for that key on that line (rename the other if both are needed)")
            if not isinstance(row, dict):
                return (f"line {i} is a JSON {type(row).__name__}, not an object",
                        "write each line as an object with one key per column, e.g. {\"text\": ..., \"label\": ...}")
    elif suffix == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return (f"is not valid JSON (line {exc.lineno}: {exc.msg})",
                    "fix that line, or write one object per line as .jsonl")
    return None


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _utf16(data: bytes) -> str | None:
    """'UTF-16' (or UTF-32) when the bytes are text in that encoding, by its byte-order mark or, for
    ASCII text without one, by a zero byte beside every character; else None."""
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "UTF-32"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16"
    odd, even = data[1:200:2], data[0:200:2]
    if len(odd) >= 2 and (odd.count(0) > len(odd) * 3 // 4 or even.count(0) > len(even) * 3 // 4):
        return "UTF-16"  # ASCII text in UTF-16 without a byte-order mark
    return None
