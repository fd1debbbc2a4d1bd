"""constraints.txt, the lock `make setup` installs, covers pyproject.toml's dependencies."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_dependency_is_pinned_within_its_range():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [Requirement(r) for r in project["dependencies"] + extras["train"] + extras["dev"] + extras["docs"]]
    pins = _pins()
    for req in wanted:
        name = canonicalize_name(req.name)
        if name == "torch":  # make setup chooses torch itself (a CUDA build already there is kept)
            assert name not in pins
            continue
        assert name in pins, f"{req.name} is in pyproject.toml but not in constraints.txt: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}"


def test_the_lock_names_the_python_it_was_made_with():
    first = (REPO / "constraints.txt").read_text().splitlines()[0]
    assert first.startswith("# python 3.")
