"""Write constraints.txt: the exact package set the test suite last passed with.

    python scripts/lock.py            # after `make test-latest` (or `make test`) passed

Walks ladder's requirements (with the extras `make setup` installs) through the installed
packages' metadata, so the lock holds ladder's dependency closure and nothing else that happens to
be in the environment. torch is left out on purpose: `make setup` keeps a torch already installed
(a CUDA build, say) and pins the CPU wheel otherwise, and a constraint on torch would replace the
user's build. `make setup` installs with `-c constraints.txt` when the running Python is the one
the lock was made with (its first line says which).
"""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

EXTRAS = ("train", "dev", "docs", "data")
"""The extras `make setup` installs (and `data`, which `dev` covers)."""
LEFT_OUT = ("torch",)
"""Chosen by `make setup` itself (see above); nvidia-* and triton come only with CUDA builds."""


def closure(root: str = "ladder", extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """Installed name → version for `root`'s requirements (with `extras`), transitively."""
    found: dict[str, str] = {}
    todo = [(root, set(extras))]
    while todo:
        name, wanted = todo.pop()
        dist = distribution(name)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
                continue
            key = canonicalize_name(req.name)
            if key in found or key in LEFT_OUT or key.startswith("nvidia-") or key == "triton":
                continue
            try:
                found[key] = distribution(req.name).version
            except PackageNotFoundError:
                continue  # an optional dependency this platform does not install
            todo.append((req.name, set(req.extras)))
    return found


def main(out: Path = Path(__file__).resolve().parents[1] / "constraints.txt") -> None:
    pins = closure()
    py = ".".join(platform.python_version_tuple()[:2])
    lines = [f"# python {py} — the package set `make test` last passed with (scripts/lock.py wrote it;",
             "# `make setup` installs it; `make test-latest` tries the newest allowed versions).",
             *(f"{name}=={v}" for name, v in sorted(pins.items()))]
    out.write_text("\n".join(lines) + "\n")
    print(f"{out.name}: {len(pins)} packages for python {py}", file=sys.stderr)


if __name__ == "__main__":
    main()
