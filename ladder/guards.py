"""The guardrails: each a named check that returns a Guard with a message saying what to do."""

from __future__ import annotations

import random
from typing import Sequence, TypeVar

from ladder.config import GuardsConfig
from ladder.types import Guard, Sample

T = TypeVar("T")


def subsample(items: Sequence[T], n: int | str, seed: int, guards: GuardsConfig) -> tuple[list[T], list[Guard]]:
    """A seeded random subsample (kept in data order), plus size warnings.

    Every stage of an experiment evaluates exactly these items, so stages compare pairwise."""
    total = len(items)
    if n == "all" or n >= total:
        chosen = list(items)
    else:
        keep = sorted(random.Random(seed).sample(range(total), n))
        chosen = [items[i] for i in keep]
    k = len(chosen)
    flags = []
    if k > guards.max_n:
        flags.append(Guard("subsample", "warn",
                           f"evaluating {k} examples: more than you need for a clean signal "
                           f"(300-1,000 is enough) and it costs more; set subsample.n", float(k)))
    elif k < guards.min_n:
        why = f" (the test split has only {total})" if total < guards.min_n else ""
        flags.append(Guard("subsample", "warn",
                           f"evaluating {k} examples{why}: too few for clean trends; "
                           f"aim for at least {guards.min_n}", float(k)))
    else:
        flags.append(Guard("subsample", "ok", f"{k} of {total} test examples (seed {seed})", float(k)))
    return chosen, flags


def stop_hit_rate(samples: Sequence[Sample]) -> float:
    """Share of samples that ended on a stop sequence or EOS rather than running into max_tokens."""
    done = [s for s in samples if s.finish_reason != "error"]
    if not done:
        return float("nan")
    return sum(s.finish_reason in ("stop", "eos") for s in done) / len(done)


def stop_guard(samples: Sequence[Sample], stops: Sequence[str], threshold: float) -> Guard:
    rate = stop_hit_rate(samples)
    if stops and rate < threshold:
        return Guard("stop_hit", "warn",
                     f"only {rate:.0%} of samples ended on a stop sequence or EOS (threshold "
                     f"{threshold:.0%}); the rest ran to max_tokens — tokens nobody reads. Check the "
                     f"stop strings {list(stops)!r} match what the model writes, or lower max_tokens", rate)
    if not stops and rate < threshold:
        return Guard("stop_hit", "info",
                     f"{rate:.0%} of samples ended before max_tokens; the rest were cut off", rate)
    return Guard("stop_hit", "ok", f"{rate:.0%} of samples ended on a stop or EOS", rate)
