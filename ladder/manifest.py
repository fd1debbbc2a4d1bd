"""manifest.json: what a results folder was computed with (versions, git sha, seeds, the test
subsample's ids, each stage's run id and the training rows each training stage used), rewritten
after every stage."""

from __future__ import annotations

import functools
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ladder.config import Experiment
from ladder.types import Example


PACKAGES = ("ladder", "torch", "transformers", "datasets", "peft", "trl", "openai", "anthropic")
"""The packages whose versions decide a result, in manifest.json and `ladder --version`."""


def package_versions() -> dict[str, str]:
    """The installed versions of PACKAGES (read from package metadata: nothing is imported)."""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return versions


@functools.cache
def _provenance(folder: str) -> tuple[dict[str, str], str | None]:
    """Package versions and the git sha: fixed for a process, and manifest.json is rewritten after
    every stage, so look them up once."""
    versions = package_versions()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=folder).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return versions, sha


def manifest(exp: Experiment, examples: list[Example], run_ids: dict[str, str | None],
             train_subsamples: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """manifest.json's content; `run_ids`: each stage's run id, None for one not decided yet (its
    model comes from a stage that has not run); `train_subsamples`: the training rows each finished
    training stage used (its `train_subsample` setting, rows there were, rows used, seed, digest)."""
    trained = train_subsamples or {}
    versions, sha = _provenance(str(exp.base_dir))
    cfg = exp.config
    return {
        "experiment": cfg.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "versions": versions,
        "git_sha": sha,
        "seed": cfg.seed,
        "subsample": {"n": len(examples), "seed": exp.seed_for(cfg.subsample.seed),
                      "ids": [ex.id for ex in examples],
                      # Parallel to ids: each example's content digest, for `ladder compare` across experiments.
                      "content": [ex.content[:16] for ex in examples]},
        "stages": [{"name": s.name, "type": s.type, "skipped": s.skip} if s.skip else
                   {"name": s.name, "type": s.type, "run_id": run_ids.get(s.name),
                    **({"train_subsample": trained[s.name]} if s.name in trained else {})} for s in exp.stages],
    }


EXAMPLES = "examples.jsonl"
"""results/<exp>/examples.jsonl: the test subsample's examples (id, fields, target, choices), one a
line in subsample order, so `ladder.load` gives each sample its example's data fields and not only
the rendered prompt. Rewritten only when the subsample's contents change."""


def write_examples(folder: Any, examples: list[Example]) -> None:
    import json
    from pathlib import Path

    from ladder.store import atomic_write

    text = "".join(json.dumps({"id": ex.id, "fields": ex.fields, "target": ex.target,
                               "choices": None if ex.choices is None else list(ex.choices)},
                              ensure_ascii=False, default=repr) + "\n" for ex in examples)
    path = Path(folder) / EXAMPLES
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write(path, text)
