"""A training stage's run folder, with the model one level down in model/ (copied from ladder-tiny)."""
import shutil
from pathlib import Path

from ladder.backends.hf import BUILTIN_MODELS

run = Path(__file__).parent / "notamodel"
shutil.copytree(BUILTIN_MODELS["ladder-tiny"], run / "model")
(run / "metrics.json").write_text("{}")
