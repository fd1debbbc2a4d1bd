"""The marker a training run leaves in a model folder: `ladder_training.json`.

Written last, so its presence means training finished (a re-run evaluates the model instead of
training again), with what the training run summarised. `policy: rl` marks an RL-trained policy —
its final folder, its LoRA adapters and every checkpoint — so that any later use of its token
probabilities is refused: RL sharpens them toward the reward, they are not calibrated.

It sits at the package's top floor, not in training/, because both sides read it: training writes
it, and backends/hf.py refuses an RL policy's probabilities by it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ladder.store import read_json, write_json

MARKER = "ladder_training.json"
RL_POLICY = "rl"
"""The marker's `policy` of a model trained by the rl stage."""


def write_marker(folder: str | Path, info: dict[str, Any]) -> None:
    write_json(Path(folder) / MARKER, info)


def training_finished(folder: str | Path) -> bool:
    """Whether a training run finished writing `folder` (the marker is written last)."""
    return (Path(folder) / MARKER).exists()


def read_marker(folder: str | Path) -> dict[str, Any]:
    """The summary a finished training run left in `folder`."""
    return read_json(Path(folder) / MARKER)


def rl_marker(algorithm: str, **more: Any) -> dict[str, Any]:
    """What marks a folder as an RL policy (`more`: e.g. checkpoint: True, step: 8)."""
    return {"policy": RL_POLICY, "algorithm": algorithm, **more}


def is_rl_policy(folder: str | Path) -> bool:
    """Whether `folder` holds a model the rl stage trained. A folder without a readable marker
    (any model not trained by ladder) is not one."""
    try:
        info = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("policy") == RL_POLICY
