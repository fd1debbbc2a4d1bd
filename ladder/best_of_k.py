"""Best-of-k from one pool of N samples: the unbiased estimator, the curve, and the KL (its
analytic upper bound, and the exact KL over the pool); majority@k from the same pool. The math
behind the best_of_n stage (and rl's best-of-N baseline), apart from any model or file.

Drawing N samples once and asking "what would best-of-k have scored?" for every k ≤ N needs no
re-sampling. Sort the pool by the selector; the best of a uniformly random k-subset is the i-th
smallest with probability C(i-1, k-1) / C(N, k) (the other k-1 members all come from below it), so

    E[best of k] = Σ_i C(i-1, k-1) / C(N, k) · v_(i)

where v_(i) is the value (the selector score itself, or the task metric) of the i-th smallest
sample under the selector. This is exact for the pool, not an approximation, and uses every sample.

Ties: selection keeps the first of equal scores (the lowest sample index). Sorting by
(score, -index) is a strict order under which "the maximum of a subset" is exactly that sample,
so the metric of the selected sample is averaged consistently with how the stage selects.

KL from the base policy: log k − (k−1)/k is only an upper bound (Beirami et al. 2024), reached
when no two samples are alike; a policy that repeats itself (2 distinct answers in 32) is far
below it. So beside the bound the curve reports `kl_pool`: the exact KL(best-of-k ‖ base) where
the base is the prompt's pool itself — each distinct text with probability count / N — and
best-of-k draws k samples from it and keeps the best, equal scores going to the first drawn (the
stage's rule, in the order of the draws), averaged over prompts. A plug-in estimate: a pool that missed the policy's rare outputs sees less.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import Sequence

from ladder.stats import mean_ci


def ks(n: int) -> list[int]:
    """The k of the curve: 1, 2, 4, ... below n, and n itself."""
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return out + [n]


@lru_cache(maxsize=256)
def order_weights(n: int, k: int) -> tuple[float, ...]:
    """P(the i-th smallest of n is the best of a random k-subset), for i = 1..n.

    Exact integer binomials, one division each: Python divides big ints correctly rounded, so
    this stays accurate at n = 10,000 where a product of ratios would drift."""
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    total = math.comb(n, k)
    return tuple(math.comb(i - 1, k - 1) / total for i in range(1, n + 1))


def selection_order(scores: Sequence[float]) -> list[int]:
    """Sample indices from worst to best under the selector; of equal scores the first is best."""
    return sorted(range(len(scores)), key=lambda i: (scores[i], -i))


def select(scores: Sequence[float]) -> int:
    """Index of the selected sample: the highest score, the first of ties."""
    return selection_order(scores)[-1]


def best_of_k(scores: Sequence[float], k: int, values: Sequence[float] | None = None) -> float:
    """Expected `values` (default: the scores) of the sample the selector picks from a uniformly
    random k-subset of the pool."""
    values = scores if values is None else values
    order = selection_order(scores)
    weights = order_weights(len(scores), k)
    return sum(w * values[i] for w, i in zip(weights, order))


def kl_best_of_k(k: int) -> float:
    """The upper bound log k − (k−1)/k on KL(best-of-k ‖ base) (Stiennon et al. 2020; a bound for
    any base, Beirami et al. 2024), met only by a base that never repeats a sample."""
    return math.log(k) - (k - 1) / k


def kl_pool(texts: Sequence[str], scores: Sequence[float], k: int) -> float:
    """Exact KL(best-of-k ‖ pool) in nats, the pool of N samples being the base distribution over
    its distinct texts (count / N each). Best-of-k draws k samples from the pool independently and
    keeps the best, ties going to the one drawn first — the stage's rule (the first sample of equal
    scores), applied to the order of the draws, not to the pool's own index. So a score level with
    `below` samples under it and `tied` samples at it holds the kept sample with probability
    ((below + tied)/N)^k − (below/N)^k, shared equally by its tied samples (the first draw to land
    on the level is any of them alike). Repeated texts pool their probability on both sides."""
    n = len(scores)
    if n == 0:
        return 0.0
    base: dict[str, int] = {}
    for t in texts:
        base[t] = base.get(t, 0) + 1
    levels: dict[float, list[int]] = {}
    for i, s in enumerate(scores):
        levels.setdefault(s, []).append(i)
    picked: dict[str, float] = {}
    below = 0
    for s in sorted(levels):
        tied = levels[s]
        share = (((below + len(tied)) / n) ** k - (below / n) ** k) / len(tied)
        for i in tied:
            picked[texts[i]] = picked.get(texts[i], 0.0) + share
        below += len(tied)
    kl = sum(q * math.log(q * n / base[t]) for t, q in picked.items() if q > 0)
    return max(kl, 0.0)  # rounding can leave -1e-17 where the two are equal


def curve(pools: Sequence[tuple[Sequence[float], Sequence[float]]], n: int,
          texts: Sequence[Sequence[str]] | None = None) -> list[dict[str, float]]:
    """The reward-vs-k curve over prompts: for each k, the mean (with a 95% CI) of the expected
    selector score and of the expected task metric of the selected sample, beside the KL bound
    (`kl_bound`) and, given each pool's `texts`, the exact KL over the pools (`kl_pool`, mean over prompts).

    `pools` holds (selector scores, metric values) per prompt. A prompt that lost samples to errors
    has a smaller pool; there k is capped at its pool size (best of all it has)."""
    rows = []
    for k in ks(n):
        per = [(best_of_k(s, min(k, len(s))), best_of_k(s, min(k, len(s)), m)) for s, m in pools if s]
        sel, met = mean_ci([a for a, _ in per]), mean_ci([b for _, b in per])
        row = {"k": k, "selector": sel.value, "selector_ci": [sel.ci_low, sel.ci_high],
               "metric": met.value, "metric_ci": [met.ci_low, met.ci_high], "kl_bound": kl_best_of_k(k),
               "n": sel.n}
        if texts is not None:
            kls = [kl_pool(t, s, k) for t, (s, _) in zip(texts, pools) if s]
            row["kl_pool"] = sum(kls) / len(kls) if kls else 0.0
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Majority vote (self-consistency)

MAJORITY_EXACT_SUBSETS = 4096
"""majority@k averages over every k-subset when there are at most this many, else over
MAJORITY_DRAWS seeded random ones (an unbiased Monte Carlo estimate)."""
MAJORITY_DRAWS = 1000


def majority(answers: Sequence[object]) -> int:
    """Index of the majority pick: the first sample whose answer is the most common one. Ties go to
    the answer seen first, as Counter.most_common breaks them in lm-eval's majority_vote filter and
    inspect_ai's `mode` reducer. A sample with no answer (None) votes for "no answer", like lm-eval's
    "[invalid]" fallback, so a pool that mostly failed to answer is scored as such."""
    counts: dict[object, int] = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    top = max(counts.values())
    return next(i for i, a in enumerate(answers) if counts[a] == top)


def majority_of_k(answers: Sequence[object], values: Sequence[float], k: int, seed: int = 0,
                  draws=None) -> tuple[float, bool]:
    """Expected `values` of the majority pick of a uniformly random k-subset of the pool, the
    subset's samples in their pool order (so ties go as the stage breaks them). Returns (estimate,
    exact): exact enumeration of all C(n, k) subsets when there are at most MAJORITY_EXACT_SUBSETS,
    else the mean over MAJORITY_DRAWS subsets drawn with `seed`. `draws`: MAJORITY_DRAWS random
    permutations of range(n) to take the subsets from (their first k), so the k of one curve share
    the work of drawing."""
    import numpy as np

    n = len(answers)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    ids: dict[object, int] = {}
    code = np.array([ids.setdefault(a, len(ids)) for a in answers])
    vals = np.asarray(values, dtype=float)
    exact = math.comb(n, k) <= MAJORITY_EXACT_SUBSETS
    if exact:
        subsets = np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
    else:
        if draws is None:
            draws = permutations(n, seed)
        subsets = np.sort(draws[:, :k], axis=1)
    rows, m = subsets.shape[0], len(ids)
    flat = (np.arange(rows)[:, None] * m + code[subsets]).ravel()
    counts = np.bincount(flat, minlength=rows * m).reshape(rows, m)
    first = np.full(rows * m, n, dtype=np.int64)  # each answer's first sample in the subset
    np.minimum.at(first, flat, subsets.ravel())
    first = first.reshape(rows, m)
    # The most votes, then the earliest first sample: a strict order, so argmax is the pick.
    winner = np.argmax(counts * (n + 1) - first, axis=1)
    picked = first[np.arange(rows), winner]
    return float(vals[picked].mean()), exact


def permutations(n: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.arange(n), (MAJORITY_DRAWS, 1)), axis=1)


def majority_curve(pools: Sequence[tuple[Sequence[object], Sequence[float]]], n: int, seed: int = 0
                   ) -> tuple[list[dict[str, float]], str]:
    """majority@k for the k of the curve: per k, the mean over prompts (with a 95% CI) of the
    expected task metric of the majority pick of a random k-subset. `pools` holds (answers, metric
    values) per prompt; k is capped at a prompt's pool size. Also says how it was computed."""
    per: dict[int, list[float]] = {k: [] for k in ks(n)}
    sampled = False
    for j, (answers, values) in enumerate(pools):
        if not answers:
            continue
        m = len(answers)
        draws = permutations(m, seed * 1_000_003 + j) if any(
            math.comb(m, min(k, m)) > MAJORITY_EXACT_SUBSETS for k in per) else None
        for k in per:
            est, exact = majority_of_k(answers, values, min(k, m), draws=draws)
            per[k].append(est)
            sampled |= not exact
    rows = []
    for k, ests in per.items():
        mc = mean_ci(ests)
        rows.append({"k": k, "majority": mc.value, "majority_ci": [mc.ci_low, mc.ci_high], "n": mc.n})
    how = (f"Monte Carlo over {MAJORITY_DRAWS} seeded k-subsets where C(N, k) > {MAJORITY_EXACT_SUBSETS}, "
           "exact enumeration elsewhere" if sampled else "exact enumeration of every k-subset")
    return rows, how
