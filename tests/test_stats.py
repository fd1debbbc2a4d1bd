"""Confidence intervals against hand computations."""

import math

from ladder.stats import mean_ci, wilson


def test_wilson_matches_hand_computation():
    # p = 0.6, n = 100, z = 1.96: centre = (0.6 + z²/200)/(1 + z²/100), half = z·sqrt(0.0024 + z²/40000)/(1 + z²/100)
    z = 1.959963984540054
    centre = (0.6 + z * z / 200) / (1 + z * z / 100)
    half = z * math.sqrt(0.6 * 0.4 / 100 + z * z / 40000) / (1 + z * z / 100)
    lo, hi = wilson(60, 100)
    assert abs(lo - (centre - half)) < 1e-12 and abs(hi - (centre + half)) < 1e-12
    assert abs(lo - 0.5020) < 1e-3 and abs(hi - 0.6906) < 1e-3  # textbook values


def test_wilson_stays_in_unit_interval_at_extremes():
    lo, hi = wilson(0, 50)
    assert abs(lo) < 1e-12 and 0 < hi < 0.1
    lo, hi = wilson(50, 50)
    assert abs(hi - 1) < 1e-12 and 0.9 < lo < 1


def test_binary_scores_use_wilson_and_carry_n():
    m = mean_ci([1.0] * 30 + [0.0] * 70)
    assert m.n == 100 and m.value == 0.3
    assert (m.ci_low, m.ci_high) == wilson(30, 100)


def test_continuous_scores_use_t_interval():
    values = [0.5, 0.7, 0.2, 0.9, 0.4]
    m = mean_ci(values)
    mean = sum(values) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)
    assert abs(m.ci_high - (mean + 2.776 * sd / math.sqrt(5))) < 1e-9


def test_empty_is_nan_with_n_zero():
    m = mean_ci([])
    assert m.n == 0 and math.isnan(m.value)
