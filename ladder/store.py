"""The results layout on disk, and the only code that writes it.

results/<experiment>/
  experiment.yaml   resolved config          manifest.json   versions, seeds, subsample ids
  summary.csv/.md   one row per stage        <stage>/<run_id>/samples.jsonl, metrics.json
  log.jsonl/LOG.md  the research log (ladder/history.py), appended once per run or climb

Whole files are written atomically (temp file + rename), so a crash leaves the old version or
the new one, never half of either. samples.jsonl is append-only: a line is written only when
complete, and a torn last line from a killed run is cut off on resume.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from ladder.errors import LadderError

# mkstemp makes files only their owner can read; results are for sharing, so atomic writes get
# the mode a plain open() would give (0o666 less the umask). The umask can only be read by
# setting it, so that happens once, at import.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


RESERVED_NAMES = ("experiment.yaml", "manifest.json", "summary.csv", "summary.md", "log.jsonl", "LOG.md",
                  "climb.json", "report.html", "atlas.html", "labels.jsonl", "variants", "variants.json",
                  "playground")
"""What ladder itself keeps at the top of an experiment's results folder (files, and the folders of
variants and playground sessions): a stage's folder may not take one of these names (compared
without case, as macOS's file system does)."""


def check_results_folder(folder: Path, where: str | None) -> None:
    """The results folder, or the first of its parents that exists, must be a folder: a file there
    (`results_dir: results.txt`) is said with the field and the fix before anything is written."""
    for p in (folder, *folder.parents):
        if p.exists():
            if not p.is_dir():
                raise LadderError(f"the results folder {folder} cannot be made: {p} is a file", where=where,
                                  field="results_dir" if p != folder else "name",
                                  fix="point results_dir at a folder (--set results_dir=...), or move that file away")
            return


def _io_error(path: Path, exc: OSError) -> LadderError:
    if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        fix = "choose a writable results_dir (--set results_dir=...) or fix the folder's permissions"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LadderError(f"cannot write: the disk (or your quota) is full ({exc.strerror})", where=str(path),
                           fix="free disk space or point results_dir at another disk, then run the same "
                               "command again: finished stages and examples are kept")
    else:
        fix = None
    return LadderError(f"cannot write ({exc.strerror})", where=str(path), fix=fix)


def atomic_write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o666 & ~_UMASK)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise _io_error(path, exc) from None


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(finite(data), indent=2, sort_keys=False, default=str, allow_nan=False) + "\n")


def finite(data: Any) -> Any:
    """`data` with every NaN or infinity replaced by None: JSON has no NaN (Python writes a bare
    `NaN` that strict readers reject), and "no value" (a mean of nothing) is what null says."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class JsonlWriter:
    """Append-only JSONL; each record is one write() of a full line, flushed at once."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(path, "a", encoding="utf-8")
        except OSError as exc:
            raise _io_error(path, exc) from None

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        try:
            self._f.write("".join(json.dumps(r, default=str) + "\n" for r in records))
            self._f.flush()
        except OSError as exc:
            raise _io_error(self.path, exc) from None

    def close(self) -> None:
        try:
            self._f.close()
        except OSError as exc:  # the last flush can fail too (a full disk)
            raise _io_error(self.path, exc) from None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            self.close()
        except LadderError:
            # A write already failed (its error is on its way up): closing retries the flush of
            # the same unwritten bytes and fails the same way, which must not replace that error.
            if exc_type is None:
                raise


def records_digest(scores: dict[str, float]) -> str:
    """A digest of per-example scores (id → score), whatever their order: metrics.json records it
    beside the count, so a samples.jsonl changed after the fact (truncated, edited) is noticed."""
    blob = json.dumps(sorted((str(i), float(v)) for i, v in scores.items()), separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def read_jsonl(path: Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Records of a JSONL file. With repair=True a torn last line (a killed writer) is cut off
    the file, so appending can go on from a clean line boundary."""
    if not path.exists():
        return []
    data = path.read_bytes()
    records, good_end, pos = [], 0, 0
    for line in data.splitlines(keepends=True):
        pos += len(line)
        if not line.endswith(b"\n"):
            break
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
        good_end = pos
    if repair and good_end != len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return records


class ExperimentLock:
    """An exclusive lock on a results folder: two `ladder run`s on one experiment would interleave
    their samples. The second one fails at once with a clear message instead."""

    def __init__(self, folder: Path):
        self.path = folder / ".lock"
        self._f = None

    def __enter__(self) -> ExperimentLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a+")
        except OSError as exc:
            raise _io_error(self.path, exc) from None
        try:
            fcntl.flock(self._f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.close()
            raise LadderError("another ladder process is running this experiment",
                              where=str(self.path.parent),
                              fix="wait for it to finish, or use a different experiment name") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._f:
            fcntl.flock(self._f, fcntl.LOCK_UN)
            self._f.close()
