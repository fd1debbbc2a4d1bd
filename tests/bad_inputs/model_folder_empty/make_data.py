"""An empty folder cannot be committed: made here."""
from pathlib import Path

(Path(__file__).parent / "notamodel").mkdir()
