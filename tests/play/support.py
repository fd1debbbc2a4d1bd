"""What the playground tests share: a fake OpenAI server whose two models answer differently, and
a sentiment experiment pointing at it (the real SDK over real HTTP, never patched)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ladder.testing.fake_api import FakeRequest
from tests.backends.api_support import FAST, KEY, KEY_ENV, sentiment
from tests.conftest import REPO, experiment


def responder(req: FakeRequest, index: int) -> str:
    """fake-good labels the review by its word; fake-lazy says 'neutral' — unless shots were
    pinned (assistant turns in the prompt), then it repeats the last shot's answer. An instruction
    containing SHOUT makes either answer in capitals."""
    shots = [m["content"] for m in req.messages if m["role"] == "assistant"]
    if req.model == "fake-good":
        answer = sentiment(req, index)
    else:
        answer = shots[-1] if shots else "neutral"
    if any("SHOUT" in m["content"] for m in req.messages if m["role"] == "system"):
        answer = answer.upper()
    return answer


def fake_experiment(tmp_path: Path, base_url: str, **more) -> Path:
    model = {"backend": "openai", "name": "fake-good", "base_url": base_url, "api_key_env": KEY_ENV,
             "price": {"input": 1.0, "output": 2.0}, **FAST}
    return experiment(tmp_path, "unused", model=model, subsample={"n": 30}, **more)


def ladder(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, as a user runs it (this checkout first on the path)."""
    full = {**os.environ, "PYTHONPATH": str(REPO), KEY_ENV: KEY, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ladder.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=full, timeout=300)
