"""Rewrite docs/reference.md from the pydantic models (see ladder/reference.py)."""

from pathlib import Path

from ladder.reference import render

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "docs" / "reference.md"
    out.write_text(render())
    print(f"wrote {out}")
