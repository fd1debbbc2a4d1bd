"""results/<exp>/playground/<session>.jsonl: every column, message, cell and chat turn of a
playground session, appended as it happens, so nothing typed or paid for is lost and a session
reopens where it stopped. Lines hold prompts, model specs (backend, name, base_url, the *name* of
the key's environment variable) and outputs — never an API key."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from ladder.store import read_jsonl


class SessionLog:
    def __init__(self, path: Path, restored: list[dict[str, Any]]):
        self.path = path
        self.session = path.stem
        self.restored = restored
        self._lock = threading.Lock()

    @classmethod
    def open(cls, folder: Path, session: str | None, resume: bool) -> SessionLog:
        """The named session, else the latest one when `resume`, else a new one."""
        if session is None and resume:
            found = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
            session = found[-1].stem if found else None
        if session is None:
            session = time.strftime("%Y%m%d-%H%M%S")
            while (folder / f"{session}.jsonl").exists():
                session += "b"
        path = folder / f"{session}.jsonl"
        return cls(path, read_jsonl(path, repair=True) if path.exists() else [])

    def write(self, item: dict[str, Any]) -> None:
        line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **item}, ensure_ascii=False, default=str)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")


def sessions(results: Path) -> list[dict[str, Any]]:
    """One summary per playground session of an experiment folder, oldest first (for `ladder log`)."""
    folder = results / "playground"
    out = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        lines = read_jsonl(path, repair=True)
        columns = [line for line in lines if line.get("kind") == "column"]
        cells = [line for line in lines if line.get("kind") == "cell"]
        out.append({
            "session": path.stem, "path": str(path),
            "started": lines[0]["time"] if lines else "", "last": lines[-1]["time"] if lines else "",
            "versions": list(dict.fromkeys(c["version"] for c in columns)),
            "models": list(dict.fromkeys(f"{c['spec']['model'].get('backend')}:{c['spec']['model'].get('name')}"
                                         for c in columns)),
            "cells": len(cells), "cost": round(sum(c.get("cost", 0.0) for c in cells), 6),
            "chats": sum(line.get("kind") == "chat" for line in lines),
            "variants": [line["name"] for line in lines if line.get("kind") == "variant"],
        })
    return out


def render_sessions(items: list[dict[str, Any]]) -> str:
    if not items:
        return ""
    out = ["", "## Playground sessions", ""]
    for s in items:
        out.append(f"- {s['session']} ({s['started']} → {s['last']}): {s['cells']} cells, "
                   f"{len(s['versions'])} prompt version{'s' if len(s['versions']) != 1 else ''} ({', '.join(s['versions'])}), "
                   f"model{'s' if len(s['models']) != 1 else ''} "
                   f"{', '.join(s['models'])}, ${s['cost']:.4f}"
                   + (f", {s['chats']} chat turns" if s['chats'] else "")
                   + (f"; saved as variants {', '.join(s['variants'])}" if s['variants'] else "")
                   + f" — {s['path']}")
    return "\n".join(out) + "\n"


def print_sessions(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print("".join(json.dumps({"playground": s}, ensure_ascii=False) + "\n" for s in items), end="")
    else:
        print(render_sessions(items), end="")
