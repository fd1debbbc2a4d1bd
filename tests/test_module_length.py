"""No module of ladder/ is over MAX_LINES lines, outside ladder/testing/ (the fake servers, a test
aid that mirrors whole provider APIs). A module past it does more than one job: split it by job
(as stages/sft.py gave its curves and guards to sft_curves.py and sft_guards.py), not by count."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO

MAX_LINES = 450


def too_long(root: Path) -> dict[str, int]:
    """{path: lines} of the modules under root/ladder over MAX_LINES, testing/ left out."""
    package = root / "ladder"
    out = {}
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] == "testing":
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            out[str(path.relative_to(root))] = lines
    return out


def test_no_module_of_ladder_is_over_450_lines():
    found = too_long(REPO)
    assert not found, f"modules over {MAX_LINES} lines (split them by job): " + ", ".join(
        f"{p} ({n})" for p, n in found.items())


def test_the_check_counts_lines_and_leaves_testing_out(tmp_path):
    (tmp_path / "ladder" / "testing").mkdir(parents=True)
    (tmp_path / "ladder" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "ladder" / "fits.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "ladder" / "testing" / "server.py").write_text("x = 1\n" * 1000)
    assert too_long(tmp_path) == {"ladder/long.py": MAX_LINES + 1}
