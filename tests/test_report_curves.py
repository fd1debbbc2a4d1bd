"""How ladder/report_curves.py draws a curve's x axis: over N always logarithmic (the README says
log), over training steps always linear."""

from __future__ import annotations

from ladder.report_curves import curve_figure
from ladder.types import Curve


def test_best_of_n_axis_is_log_even_for_n_up_to_8():
    bon = curve_figure("best_of_n", Curve("curve", [1, 2, 4, 8], {"metric": [0.4, 0.5, 0.55, 0.6]}, "n", "k"))
    assert bon.layout.xaxis.type == "log" and list(bon.layout.xaxis.ticktext) == ["1", "2", "4", "8"]
    steps = curve_figure("sft", Curve("loss", [1, 2, 4, 8], {"train": [1.0, 0.8, 0.6, 0.5]}, "step", "step"))
    assert steps.layout.xaxis.type == "linear"
