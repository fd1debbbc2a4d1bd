"""What the API backend tests share: a sentiment responder for the fake server, experiment YAML
pointing at it, and the fake server as a separate process (for tests that SIGKILL a client).

Every test talks to ladder.testing.fake_api with the real SDK clients over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

from ladder.store import read_jsonl
from ladder.testing.fake_api import FakeRequest
from tests.conftest import LABELS, REPO, WORDS, experiment

# Shaped like a real key so the scrubbing and the leak greps are meaningful.
KEY = "sk-proj-LADDERTESTKEY0123456789abcdef"
KEY_ENV = "LADDER_TEST_API_KEY"
ENV = {**os.environ, "PYTHONPATH": str(REPO), KEY_ENV: KEY}
FAST = {"backoff": 0.01, "max_backoff": 0.2, "timeout": 0.5}
"""Model keys that keep retries quick against a local server."""


def sentiment(req: FakeRequest, index: int) -> str:
    """Labels the review in the last user turn by its word; calls every 'ordinary' meal positive,
    so accuracy is high but not 1."""
    review = req.prompt
    if "ordinary" in review:
        return "positive"
    for label, words in WORDS.items():
        if any(w in review for w in words):
            return label
    return "neutral"


def varied(req: FakeRequest, index: int) -> str:
    """sentiment's answer for about a third of the samples and another label for the rest, fixed
    by (prompt, sample index): best_of_n's pools then hold different answers, so which sample wins
    depends on every sample of the pool."""
    right = sentiment(req, index)
    if zlib.crc32(f"{req.prompt}|{index}".encode()) % 3 == 0:
        return right
    return LABELS[(LABELS.index(right) + 1) % len(LABELS)]


def outcome(folder: Path, stage: str) -> dict:
    """What a finished stage computed, less what depends on how the run went (timings, cache hits,
    resumes): two runs of one config must agree on it exactly, however often they were killed."""
    (run_dir,) = (folder / stage).iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("seconds", "cached_samples", "generated_samples", "resumed_examples"):
        metrics["stats"].pop(key)
    metrics["stats"].pop("rate_control", None)  # the rate controller's trace: timings too
    rows = [r for r in read_jsonl(run_dir / "samples.jsonl") if not r["error"]]
    assert len(rows) == len({r["id"] for r in rows}), "an example was recorded twice"
    return {"run_id": run_dir.name, "metrics": metrics, "records": {r["id"]: r for r in rows}}


def api_experiment(tmp_path: Path, backend: str, base_url: str, *, model: dict | None = None,
                   **overrides) -> Path:
    """The conftest sentiment experiment with an API model on the fake server."""
    name = "gpt-4o-mini" if backend == "openai" else "claude-3-5-haiku-latest"
    spec = {"backend": backend, "name": name, "base_url": base_url, "api_key_env": KEY_ENV,
            "concurrency": "auto", **FAST, **(model or {})}
    return experiment(tmp_path, "unused", model=spec, **overrides)


def leaks(*places: Path | str) -> list[str]:
    """Files under the given folders, or captured texts, that contain the test key."""
    found = []
    for place in places:
        if isinstance(place, Path):
            for f in place.rglob("*"):
                if f.is_file() and KEY.encode() in f.read_bytes():
                    found.append(str(f))
        elif KEY in place:
            found.append("<captured output>")
    return found


class ServerProcess:
    """`python -m ladder.testing.fake_api` with the sentiment responder, as a context manager."""

    def __init__(self, folder: Path, *args: str, responder: str = "tests.backends.api_support:sentiment"):
        self.folder = folder
        self.args = args
        self.responder = responder

    def __enter__(self) -> ServerProcess:
        port_file = self.folder / "port"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ladder.testing.fake_api", "--port", "0", "--port-file", str(port_file),
             "--responder", self.responder, *self.args],
            env=ENV, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while not port_file.exists():
            assert self.proc.poll() is None and time.time() < deadline, "fake API server did not start"
            time.sleep(0.02)
        self.base_url = f"http://127.0.0.1:{int(port_file.read_text())}"
        return self

    def _call(self, route: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(urllib.request.Request(self.base_url + route, data=data), timeout=5) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict:
        return self._call("/_stats")

    def configure(self, **changes) -> dict:
        return self._call("/_config", changes)

    def reset(self) -> dict:
        return self._call("/_reset", {})

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
