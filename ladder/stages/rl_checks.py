"""rl's checks (see ladder/stages/rl.py): reward hacking in a pool of samples (reward rising with
length, degenerate text among the highest rewards), the training reward's collapse, and the policy
against best-of-N with the same reward."""

from __future__ import annotations

import math
import re
import statistics
from typing import Any, Sequence

from ladder.stats import paired_diff
from ladder.types import Guard, Record


def degenerate(text: str, typical_chars: float) -> str | None:
    """Why a completion is degenerate ('empty', 'repeated', 'very short'), or None."""
    t = text.strip()
    if not t:
        return "empty"
    words = t.split()
    if len(words) >= 6 and len(set(words)) / len(words) < 0.35:
        return "repeated"
    if re.search(r"(\S+(?:\s+\S+){0,2}?)(?:\s*\1){3,}", t) and len(t) > 12:
        return "repeated"
    if len(t) <= 3 and len(t) < typical_chars / 4:
        return "very short"
    return None


def hacking(pool: Sequence[tuple[float, int, str]], targets: Sequence[str], where: str) -> dict[str, Any]:
    """Reward–length correlation and the share of degenerate samples among the highest-reward ones
    of a pool of (reward, tokens, text). Returns the numbers plus `guards`."""
    out: dict[str, Any] = {"samples": len(pool), "guards": []}
    if len(pool) < 2:
        return out
    rewards = [r for r, _, _ in pool]
    lengths = [float(n) for _, n, _ in pool]
    r = pearson(rewards, lengths)
    out["reward_length_corr"] = r
    if r is not None and r >= 0.3:
        out["guards"].append(Guard("reward_length", "warn", f"in the {where}, reward rises with completion "
                                   f"length (Pearson r = {r:.2f}, {len(pool)} samples): the policy can buy "
                                   f"reward with length alone; read long high-reward samples, or compare "
                                   f"against a length-matched reference", r))
    # What a normal answer's length is: the gold targets', or (a task without them) the pool's own.
    lengths_of = [len(t) for t in targets if isinstance(t, str) and t] or [len(t) for *_, t in pool]
    typical = statistics.median(lengths_of)
    # The top decile (with its ties), but never the floor: when nearly every reward is 0, the
    # "highest" ones are just the rest.
    cut = sorted(rewards, reverse=True)[max(0, len(rewards) // 10 - 1)]
    floor = min(rewards)
    top = [(rw, degenerate(t, typical)) for rw, _, t in pool if rw >= cut and rw > floor]
    bad = [rw for rw, why in top if why]
    out["top_reward_degenerate"] = len(bad) / len(top) if top else 0.0
    kinds = sorted({why for _, why in top if why})
    if top and len(bad) / len(top) >= 0.1:
        out["guards"].append(Guard("degenerate_reward", "warn", f"{len(bad)} of the {len(top)} highest-reward "
                                   f"samples in the {where} are degenerate ({', '.join(kinds)}): the reward "
                                   f"pays for text nobody wants; fix the reward before training on it",
                                   len(bad) / len(top)))
    return out


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r, or None where it is undefined (a constant series)."""
    try:
        return statistics.correlation(x, y)
    except statistics.StatisticsError:
        return None


def collapse_guard(log: Sequence[dict[str, float]]) -> Guard:
    """Reward over the last quarter of steps against the first quarter: RL with too high a learning
    rate destroys the policy and the reward falls to (near) zero."""
    rewards = [p["reward"] for p in log if "reward" in p and not math.isnan(p["reward"])]
    if len(rewards) < 4:
        return Guard("reward_collapse", "info", "too few logged steps to judge the reward's trend")
    q = max(1, len(rewards) // 4)
    first, last = sum(rewards[:q]) / q, sum(rewards[-q:]) / q
    if first > 0 and last < 0.5 * first:
        return Guard("reward_collapse", "warn", f"the training reward fell from {first:.3f} (first quarter of "
                     f"steps) to {last:.3f} (last quarter): the policy collapsed; lower learning_rate "
                     f"(e.g. ÷10) or raise beta", last - first)
    return Guard("reward_collapse", "ok", f"training reward {first:.3f} → {last:.3f} (first → last quarter "
                 f"of steps)", last - first)


def versus_best_of_n(records: Sequence[Record], bon: dict[str, Any]) -> Guard:
    """The RL policy against best-of-N with the same reward, paired on the same test examples."""
    rl = {r.id: r.score for r in records}
    ids = [i for i in bon["scores"] if i in rl and bon["scores"][i] is not None]
    m = bon["metric"]
    d = paired_diff([rl[i] for i in ids], [bon["scores"][i] for i in ids])
    bon["diff"] = d.to_dict()
    oracle = " (the task metric as selector: an upper bound)" if bon["oracle"] else ""
    return Guard("versus_best_of_n", "info", f"best-of-{bon['n']} with the same reward, no training{oracle}: "
                 f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]; rl − best-of-{bon['n']} = "
                 f"{d.value:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}] on {d.n} examples", d.value)
