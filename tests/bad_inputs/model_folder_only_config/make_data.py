"""A folder with only config.json (ladder-tiny's)."""
import shutil
from pathlib import Path

from ladder.backends.hf import BUILTIN_MODELS

(Path(__file__).parent / "notamodel").mkdir()
shutil.copy(BUILTIN_MODELS["ladder-tiny"] / "config.json", Path(__file__).parent / "notamodel")
