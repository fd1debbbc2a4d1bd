"""Power: the smallest difference a paired comparison on n examples could have detected.

For a paired difference with per-example differences of standard deviation sd, the minimum
detectable effect at power 1−β with a two-sided test at level α is the textbook

    MDE = (z_{1−α/2} + z_{1−β}) · sd / √n          (α = 0.05, power 0.8: 2.80 · sd / √n)

and the n needed to detect a difference δ is its inverse, n = ((z_{1−α/2} + z_{1−β}) · sd / δ)².
Normal quantiles, not t: the usual planning formula. Below about 30 paired examples the t
distribution's heavier tails make the true MDE somewhat larger than this.

The sd is read back from the paired difference's own 95% interval (`stats.t_interval`: half-width
= t95(n−1) · sd / √n), so any `diff_*` column with a CI and an n gets its MDE, whoever computed it.

`ladder check` has no differences yet; it assumes sd = PLANNING_SD (see there).
"""

from __future__ import annotations

import math

from ladder.stats import Z95, t95
from ladder.types import MetricValue

Z80 = 0.8416212335729143
"""z_{0.8}: the standard normal's 80% quantile (power 0.8)."""
POWER_Z = Z95 + Z80
"""z_{0.975} + z_{0.8} ≈ 2.80: two-sided α = 0.05 at 80% power."""
PLANNING_SD = 0.5
"""The sd of per-example differences `ladder check` assumes for a planned n. For a 0/1 metric a
paired difference is −1, 0 or +1, so its sd is about √d, d the share of examples whose outcome
differs between the two rungs; sd 0.5 means a quarter of them flip — typical of two prompts or
rungs on one model, and an upper bound for rungs that mostly agree. With it n = 300 detects
±0.081 and n = 1,000 ±0.044: what the "300 is the least, 1k is safe" rule of thumb amounts to."""


def mde(sd: float, n: int) -> float:
    """The minimum detectable effect at 80% power, two-sided α = 0.05: (z + z) · sd / √n."""
    if n <= 0 or math.isnan(sd):
        return float("nan")
    return POWER_Z * sd / math.sqrt(n)


def n_needed(sd: float, delta: float) -> int:
    """Paired examples needed to detect a difference `delta` at 80% power, two-sided α = 0.05."""
    if delta == 0 or math.isnan(sd) or math.isnan(delta):
        return 0
    return math.ceil((POWER_Z * sd / abs(delta)) ** 2)


def sd_of(d: MetricValue) -> float:
    """The sd of the per-example differences behind a paired difference, from its t interval."""
    if d.n < 2 or math.isnan(d.ci_low) or math.isnan(d.ci_high):
        return float("nan")
    return (d.ci_high - d.ci_low) / 2 * math.sqrt(d.n) / t95(d.n - 1)


def diff_mde(d: MetricValue) -> float:
    """The MDE of a paired difference on its own n, from the sd its interval implies."""
    return mde(sd_of(d), d.n)


def mde_columns(cols: dict) -> dict:
    """`<diff>_mde` for every `<diff>` in a row's paired-difference columns (diff_prev, diff_zero,
    diff_base, ...) that has a CI and an n."""
    out = {}
    for key in cols:
        if key.startswith("diff_") and key.endswith("_ci_low"):
            name = key.removesuffix("_ci_low")
            try:
                d = MetricValue(float(cols[name]), float(cols[key]), float(cols[f"{name}_ci_high"]),
                                int(cols[f"{name}_n"]))
            except (KeyError, TypeError, ValueError):
                continue
            out[f"{name}_mde"] = diff_mde(d)
    return out
