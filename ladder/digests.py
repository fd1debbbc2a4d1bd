"""Content digests of files, folders and the code that scores: what a run id is made of.

A result is reused only when what it was computed from is unchanged, so identity is by *content*:
a local model folder by the bytes of every file in it (nested ones too), a python metric by its
source file. Hashing a large model on every run would be slow, so a file's digest is memoised by
(path, size, mtime_ns, ctime_ns, inode): in this process, and for large files in a small SQLite
file beside the model-call cache. The ctime is in the key because it cannot be set by hand: a
file replaced in place and `touch -d`'d back to the old mtime still has a new ctime, so it is
hashed again. The memo only saves work; any trouble with its file and the digest is computed.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sqlite3
from pathlib import Path
from typing import Any, Iterable

_MEMO: dict[tuple, str] = {}
ON_DISK_FROM = 1 << 20
"""Files at least this large (bytes) have their digest kept on disk too; smaller ones hash faster
than a lookup."""
SKIP_DIRS = {".git", "__pycache__"}
"""Folders inside a model folder that are not part of the model (git's own copy of the files,
bytecode)."""


def _memo_db() -> sqlite3.Connection | None:
    from ladder.cache import default_cache_dir

    try:
        folder = default_cache_dir()
        if not folder.is_dir():  # never made here: a run that stops on bad input writes nothing
            return None
        db = sqlite3.connect(folder / "digests.sqlite", timeout=10, isolation_level=None)
        db.execute("CREATE TABLE IF NOT EXISTS digests (key TEXT PRIMARY KEY, digest TEXT)")
        return db
    except (OSError, sqlite3.Error):
        return None


def file_digest(path: Path | str) -> str:
    """sha256 of a file's bytes, memoised by (path, size, mtime, ctime, inode)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key in _MEMO:
        return _MEMO[key]
    db = _memo_db() if st.st_size >= ON_DISK_FROM else None
    text_key = "\0".join(map(str, key))
    found = None
    if db is not None:
        try:
            row = db.execute("SELECT digest FROM digests WHERE key = ?", (text_key,)).fetchone()
            found = row[0] if row else None
        except sqlite3.Error:
            found = None
    if found is None:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        found = h.hexdigest()
        if db is not None:
            try:
                db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?)", (text_key, found))
            except sqlite3.Error:
                pass
    if db is not None:
        db.close()
    _MEMO[key] = found
    return found


def tree_files(folder: Path) -> list[Path]:
    """Every file under `folder`, nested ones included, in a stable order (symlinks followed)."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        out += [Path(root) / f for f in files]
    return sorted(p for p in out if p.is_file())


def path_digest(path: Path | str) -> str:
    """sha256 over a file's bytes, or over a folder's files (relative names and their digests)."""
    path = Path(path)
    if not path.is_dir():
        return file_digest(path)
    h = hashlib.sha256()
    for f in tree_files(path):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + file_digest(f).encode() + b"\0")
    return h.hexdigest()


def source_files(obj: Any) -> list[Path]:
    """The source files a scoring object's behaviour is written in: a function's module file (and
    the file of the module it was named from, when it is re-exported), or every file of a class's
    bases that has Python source (the metric's own module and ladder's Metric base, for instance)."""
    if inspect.isclass(obj):
        objs: Iterable[Any] = [c for c in obj.__mro__ if c is not object]
    else:
        objs = [obj, inspect.getmodule(obj)]
    files = []
    for o in objs:
        try:
            f = inspect.getsourcefile(o)
        except TypeError:  # a builtin: no source to change
            continue
        if f and Path(f).is_file() and Path(f) not in files:
            files.append(Path(f))
    return files


def code_digest(obj: Any) -> str:
    """sha256 over the source files of `obj` (see source_files): editing any of them changes it."""
    h = hashlib.sha256()
    for f in source_files(obj):
        h.update(f.name.encode() + b"\0" + file_digest(f).encode() + b"\0")
    return h.hexdigest()
