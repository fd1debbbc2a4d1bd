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
    assert abs(m.ci_high - (mean + 2.7764451051977987 * sd / math.sqrt(5))) < 1e-9  # t(0.975, 4)


def test_empty_is_nan_with_n_zero():
    m = mean_ci([])
    assert m.n == 0 and math.isnan(m.value)


def test_paired_intervals_use_student_t_beyond_30_df():
    """df 31 and 299 use t (2.040, 1.968), not the normal's 1.960: z covered 94.1% at df 31."""
    from scipy import stats

    from ladder.stats import paired_diff, t95

    assert t95(31) == stats.t.ppf(0.975, 31) and abs(t95(299) - 1.9679) < 1e-4 and abs(t95(4) - 2.7764) < 1e-4
    a = [float(i % 3 == 0) for i in range(32)]
    b = [float(i % 5 == 0) for i in range(32)]
    d = paired_diff(a, b)
    diffs = [x - y for x, y in zip(a, b)]
    mean = sum(diffs) / 32
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 31)
    assert abs(d.ci_high - (mean + stats.t.ppf(0.975, 31) * sd / math.sqrt(32))) < 1e-12


def test_delta_and_variant_intervals_are_computed_one_way():
    """The table's Δ (paired_diff) and the variants' Δ baseline (variant_diffs) give one interval."""
    from ladder.stats import paired_diff
    from ladder.variants import variant_diffs

    base = {str(i): float(i % 2) for i in range(300)}
    x = {str(i): float(i % 3 == 0) for i in range(300)}
    d = paired_diff([x[i] for i in base], [base[i] for i in base])
    v = variant_diffs({"base": {"s": base}, "x": {"s": x}}, "base")[("x", "s")]
    assert abs(v["diff_base_ci_low"] - d.ci_low) < 1e-12 and abs(v["diff_base_ci_high"] - d.ci_high) < 1e-12
