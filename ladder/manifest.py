"""manifest.json: what a results folder was computed with (versions, git sha, seeds, the test
subsample's ids and each stage's run id), rewritten after every stage."""

from __future__ import annotations

import functools
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from ladder.config import StageConfig
from ladder.errors import LadderError

if TYPE_CHECKING:
    from ladder.runner import PreparedRun


@functools.cache
def _provenance(folder: str) -> tuple[dict[str, str], str | None]:
    """Package versions and the git sha: fixed for a process, and manifest.json is rewritten after
    every stage, so look them up once."""
    versions = {}
    for pkg in ("ladder", "torch", "transformers", "datasets", "peft", "trl", "openai", "anthropic"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=folder).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return versions, sha


def manifest(plan: PreparedRun) -> dict[str, Any]:
    exp = plan.experiment
    versions, sha = _provenance(str(exp.base_dir))
    cfg = exp.config
    return {
        "experiment": cfg.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "versions": versions,
        "git_sha": sha,
        "seed": cfg.seed,
        "subsample": {"n": len(plan.examples), "seed": exp.seed_for(cfg.subsample.seed),
                      "ids": [ex.id for ex in plan.examples]},
        "stages": [{"name": s.name, "type": s.type, "skipped": s.skip} if s.skip else
                   {"name": s.name, "type": s.type, "run_id": _run_id_or_none(plan, s)} for s in exp.stages],
    }


def _run_id_or_none(plan: PreparedRun, stage: StageConfig) -> str | None:
    try:
        return plan.resolve(stage).run_id
    except LadderError:  # decided once the stage it takes its model from has run
        return None
