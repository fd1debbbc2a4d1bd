"""The on-disk cache of model calls.

One SQLite file (WAL mode) holds every sample and log-probability ever computed, keyed by a hash
of (backend, model fingerprint, full request, sample index). Each finished call is committed at
once (the API backends commit the responses of one event-loop turn together, before the next
turn), so a killed run loses only calls that were in flight, and a re-run of a finished
experiment sends nothing. Failed calls are never stored: a re-run retries exactly those.

The cache only saves work, it never decides a result: a damaged database (a crash of the disk or
of another program, not of ladder) is moved aside with a warning and the run goes on on a fresh
one, recomputing what was lost. A cache that cannot be written (a file where the folder should
be, a read-only mount, a full disk) is a clear error: `check_writable()` finds it before a run
touches its results folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from ladder.errors import LadderError

T = TypeVar("T")
# SQLite's primary result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB.
_DAMAGED = {11, 26}
_PROBE = "ladder-write-probe"


def default_cache_dir() -> Path:
    return Path(os.environ.get("LADDER_CACHE_DIR") or Path.home() / ".cache" / "ladder")


def cache_key(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _damaged(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _DAMAGED
    text = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and ("malformed" in text or "not a database" in text)


def _retry_locked(op: Callable[[], T], seconds: float = 60.0) -> T:
    """Run `op`, retrying while SQLite says the database is locked or busy (codes 5, 6)."""
    deadline = time.monotonic() + seconds
    delay = 0.01
    while True:
        try:
            return op()
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            locked = code in (5, 6) or "locked" in str(exc) or "busy" in str(exc)
            if not locked or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class Cache:
    def __init__(self, folder: Path | str | None = None):
        folder = Path(folder) if folder else default_cache_dir()
        self.folder = folder
        self.path = folder / "calls.sqlite"
        self._lock = threading.Lock()
        if folder.exists() and not folder.is_dir():
            raise LadderError("the model-call cache folder is a file, not a folder", where=str(folder),
                              fix="set cache_dir in the YAML (or LADDER_CACHE_DIR) to a folder, or move "
                                  "that file away")
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise self._error("open", exc) from None
            self._quarantine()  # the header itself is damaged
        except OSError as exc:
            raise self._error("open", exc) from None

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        # WAL is a property of the file: set once. Switching to it (and creating the table) needs
        # a lock that SQLite refuses at once, without waiting out `timeout`, while another
        # process or thread opens the same new file (variants running together): retry those.
        if _retry_locked(lambda: self._db.execute("PRAGMA journal_mode").fetchone()[0]) != "wal":
            _retry_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        self._db.execute("PRAGMA synchronous=NORMAL")
        _retry_locked(lambda: self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT)"))

    def _error(self, doing: str, exc: BaseException) -> LadderError:
        """The one-paragraph error for a cache that cannot be opened or written."""
        text = str(exc)
        err = getattr(exc, "errno", None)
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if err in (errno.ENOSPC, errno.EDQUOT) or code == 13 or "full" in text:  # 13: SQLITE_FULL
            return LadderError(f"cannot {doing} the model-call cache: the disk (or your quota) is full ({text})",
                               where=str(self.path),
                               fix="free disk space, or set cache_dir in the YAML (or LADDER_CACHE_DIR) to a "
                                   "folder on another disk, then run the same command again: finished "
                                   "stages and cached calls are kept")
        if err in (errno.EACCES, errno.EROFS, errno.EPERM) or code in (8, 14) or "readonly" in text \
                or "read-only" in text:  # 8: SQLITE_READONLY, 14: SQLITE_CANTOPEN
            return LadderError(f"cannot {doing} the model-call cache: the folder is not writable ({text})",
                               where=str(self.path),
                               fix="set cache_dir in the YAML (or LADDER_CACHE_DIR) to a writable folder, or "
                                   "fix the folder's permissions")
        return LadderError(f"cannot {doing} the model-call cache ({text})", where=str(self.path),
                           fix="set cache_dir in the YAML (or LADDER_CACHE_DIR) to a writable folder")

    def _quarantine(self) -> None:
        """Move a damaged database aside (never delete: it may hold hours of paid calls someone can
        salvage with `sqlite3 .recover`) and go on with a fresh one."""
        from ladder.progress import console

        try:
            self._db.close()
        except (AttributeError, sqlite3.Error):
            pass
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):  # the WAL belongs to the damaged file, not to the new one
                extra = Path(f"{self.path}{suffix}")
                if extra.exists():
                    os.replace(extra, f"{aside}{suffix}")
            self._open()
        except (OSError, sqlite3.Error) as exc:
            raise self._error("replace the damaged", exc) from None
        console.print(f"[yellow]warn[/yellow] cache: the model-call cache {self.path} was damaged; moved it "
                      f"to {aside} and started a fresh one. Results stay right: calls it held are made "
                      f"again (delete the moved file once you no longer need it)", highlight=False,
                      soft_wrap=True)  # unwrapped: a path broken across lines cannot be copied

    def _guarded(self, op: Callable[[], T]) -> T:
        """Run `op` (holding the lock); a damaged database is moved aside and `op` runs again on
        the fresh one."""
        try:
            return op()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                raise
            self._rollback()
            self._quarantine()
            return op()

    def _rollback(self) -> None:
        # SQLite rolls a failed transaction back by itself on some errors (a full disk): a second
        # ROLLBACK would fail with "no transaction is active" and hide the real error.
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def check_writable(self) -> None:
        """Write (and take back) one row: a read-only mount, a full disk or a damaged file shows
        now, before a run touches its results folder, not after its first paid call."""
        def probe() -> None:
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?)", (_PROBE, "null"))
            self._db.execute("DELETE FROM calls WHERE key = ?", (_PROBE,))
            self._db.execute("SELECT key FROM calls LIMIT 1").fetchall()

        self._write(probe, begin="BEGIN IMMEDIATE")

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        out: dict[str, Any] = {}

        def read() -> dict[str, Any]:
            for i in range(0, len(keys), 500):  # SQLite caps bound parameters per statement
                chunk = keys[i:i + 500]
                rows = self._db.execute(
                    f"SELECT key, value FROM calls WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                out.update((k, json.loads(v)) for k, v in rows)
            return out

        with self._lock:
            return self._guarded(read)

    def put_many(self, items: dict[str, Any]) -> None:
        if not items:
            return
        rows = [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()]

        self._write(lambda: self._db.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?)", rows))

    def _write(self, body: Callable[[], Any], begin: str = "BEGIN") -> None:
        """`body` in one transaction. A damaged file is re-raised for `_guarded` to move aside; any
        other failure (a full disk, a read-only mount) is rolled back and said plainly."""
        def transaction() -> None:
            try:
                self._db.execute(begin)
                body()
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                self._rollback()
                if _damaged(exc):
                    raise
                raise self._error("write", exc) from None

        with self._lock:
            self._guarded(transaction)

    def __len__(self) -> int:
        with self._lock:
            return self._guarded(lambda: self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def close(self) -> None:
        self._db.close()
