"""The loss over the answer choices and its chance level."""

from __future__ import annotations

import math

import pytest

from ladder.training.choices import chance_label, chance_loss, choice_loss
from ladder.types import Example


def test_choice_loss_is_chance_for_uniform_and_zero_for_certain():
    ex = [Example("a", {}, "pos", ("pos", "neg", "neu")), Example("b", {}, "neg", ("pos", "neg", "neu"))]
    uniform = choice_loss([-2.0] * 6, ex)
    assert uniform["choice_loss"] == pytest.approx(math.log(3))
    sure = choice_loss([0.0, -50, -50, -50, 0.0, -50], ex)
    assert sure["choice_loss"] == pytest.approx(0.0, abs=1e-12) and sure["choice_accuracy"] == 1.0
    wrong = choice_loss([-50, 0.0, -50, 0.0, -50, -50], ex)
    assert wrong["choice_loss"] > 40 and wrong["choice_accuracy"] == 0.0


def test_chance_is_the_mean_of_each_examples_own_log_k():
    two = Example("a", {}, "yes", ("yes", "no"))
    four = Example("b", {}, "w", ("w", "x", "y", "z"))
    assert chance_loss([two, two]) == pytest.approx(math.log(2)) and chance_label([two, two]) == "−log(1/2)"
    assert chance_loss([two, four]) == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert chance_label([four, two]) == "mean −log(1/K), K = 2…4"
    # No chance level unless every example has choices.
    assert chance_loss([two, Example("c", {}, "free text")]) is None and chance_loss([]) is None
