"""The on-disk cache of model calls.

One SQLite file (WAL mode) holds every sample and log-probability ever computed, keyed by a hash
of (backend, model fingerprint, full request, sample index). Each finished call is committed at
once, so a killed run loses only calls that were in flight, and a re-run of a finished
experiment sends nothing. Failed calls are never stored: a re-run retries exactly those.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Iterable

from ladder.errors import LadderError


def default_cache_dir() -> Path:
    return Path(os.environ.get("LADDER_CACHE_DIR") or Path.home() / ".cache" / "ladder")


def cache_key(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Cache:
    def __init__(self, folder: Path | str | None = None):
        folder = Path(folder) if folder else default_cache_dir()
        self.path = folder / "calls.sqlite"
        self._lock = threading.Lock()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT)")
        except (OSError, sqlite3.Error) as exc:
            raise LadderError(f"cannot open the model-call cache ({exc})", where=str(self.path),
                              fix="set cache_dir in the YAML or LADDER_CACHE_DIR to a writable folder") from None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        out: dict[str, Any] = {}
        with self._lock:
            for i in range(0, len(keys), 500):  # SQLite caps bound parameters per statement
                chunk = keys[i:i + 500]
                rows = self._db.execute(
                    f"SELECT key, value FROM calls WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                out.update((k, json.loads(v)) for k, v in rows)
        return out

    def put_many(self, items: dict[str, Any]) -> None:
        if not items:
            return
        rows = [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()]
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise LadderError(f"cannot write the model-call cache ({exc})", where=str(self.path),
                                  fix="free disk space or set LADDER_CACHE_DIR to another folder") from None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self._db.close()
