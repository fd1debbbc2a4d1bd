"""The docs run: each page of docs/ starts with an example that this file executes, the site builds
with `mkdocs build --strict` (a broken link between pages fails it), and the README stays short.

The convention for a page's first fenced block (written before the page's first `##` section):
- ```yaml  a complete experiment, as saved in the repository root: `ladder check --offline` accepts it;
- ```bash  ladder commands, run with `bash -e` from a folder holding the repository's configs/ and data/
           (so results/ is written there, never in the checkout), `ladder` and `python` on PATH;
- ```python a script, run there the same way.
Training rungs are checked, not run, so the whole file takes about a minute on 2 CPU cores."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

DOCS = REPO / "docs"
NOT_TUTORIALS = {
    "reference.md": "generated from the schema (tests/test_reference.py)",
    "benchmarks.md": "measured numbers; its scripts are the examples",
    "extending.md": "its examples are run whole, files and entry points, by tests/test_extending.py",
}
PAGES = sorted(p.name for p in DOCS.glob("*.md") if p.name not in NOT_TUTORIALS)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def first_example(page: str) -> tuple[str, str]:
    """(language, code) of the page's first fenced block; it must come before the first section."""
    text = (DOCS / page).read_text(encoding="utf-8")
    m = FENCE.search(text)
    assert m, f"docs/{page} has no fenced example"
    first_section = re.search(r"^## ", text, re.M)
    assert first_section is None or m.start() < first_section.start(), \
        f"docs/{page}: the runnable example must come before the first section"
    return m.group(1), m.group(2)


@pytest.fixture
def workspace(tmp_path):
    """A folder that looks like the repository root to the examples, with `ladder` being this code."""
    for name in ("configs", "data"):
        (tmp_path / name).symlink_to(REPO / name)
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    (bin_dir / "ladder").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ladder.cli "$@"\n')
    (bin_dir / "ladder").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return tmp_path, env


def test_every_tutorial_page_starts_with_a_runnable_example():
    assert len(PAGES) >= 10, PAGES  # one page per task a user has
    for page in PAGES:
        lang, code = first_example(page)
        assert lang in ("yaml", "bash", "python"), f"docs/{page}: first example is ```{lang}"
        assert code.strip(), page


@pytest.mark.parametrize("page", PAGES)
def test_the_pages_first_example_runs(page, workspace):
    folder, env = workspace
    lang, code = first_example(page)
    if lang == "yaml":
        config = yaml.safe_load(code)
        assert {"name", "task", "stages"} <= set(config), f"docs/{page}: not a complete experiment"
        (folder / "exp.yaml").write_text(code, encoding="utf-8")
        cmd = [sys.executable, "-m", "ladder.cli", "check", "exp.yaml", "--offline"]
    elif lang == "bash":
        cmd = ["bash", "-e", "-o", "pipefail", "-c", code]
    else:
        (folder / "example.py").write_text(code, encoding="utf-8")
        cmd = [sys.executable, "example.py"]
    r = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"docs/{page}'s first example failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr[-3000:]


def mkdocs_build(config: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_site_builds_strict_with_no_warnings(tmp_path):
    r = mkdocs_build(REPO / "mkdocs.yml", tmp_path / "site")
    log = r.stdout + r.stderr
    assert r.returncode == 0 and "WARNING" not in log, log
    assert (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "rungs" / "index.html").exists()


def test_a_broken_link_between_pages_fails_the_build(tmp_path):
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "tasks.md"
    page.write_text(page.read_text() + "\nSee [the rungs](rung.md).\n")
    r = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert r.returncode != 0 and "rung.md" in r.stdout + r.stderr


def test_the_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("docs/") for link in local)
    for link in local:
        assert (REPO / link).exists(), f"README links to {link}, which does not exist"
    # CI (.ci/run) runs `make test`: the README's test command must stay that.
    assert "make test" in text and "make quickstart" in text
    assert "make test" in (REPO / ".ci" / "run").read_text()
