"""Numeric answers: pull the answer out of free text and compare it with the target's.

Extraction rules (`metric: {type: numeric, extract: ...}`):

  last, first       the last (first) number in the completion, compared as floats with `tolerance`;
  gsm8k_strict      lm-evaluation-harness's gsm8k `strict-match`, exactly (see LM_EVAL below);
  gsm8k_flexible    its `flexible-extract` (the last number-like run), exactly;
  gsm8k_lenient     ladder's old rule: the number after '####' (spaces optional, '$' not
                    allowed), else the last number, compared as floats — generous to models that
                    skip or garble the marker, and agreeing with no published harness;
  gsm8k             an alias of gsm8k_strict: the name promises GSM8K's published rule;
  boxed             the content of the last \\boxed{...} (MATH style, nested braces), compared as
                    numbers when both sides are numbers and as whitespace-free strings otherwise.

The targets: for last/first/gsm8k_lenient the number after '####' in the target (else its last
number); the lm-eval rules treat the target exactly as lm-eval treats `doc_to_target` (the whole
GSM8K answer; its ignore-regexes strip the reasoning up to '#### '); boxed takes the target's last
\\boxed{...} if it has one, else what follows '####', else the whole target.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ValidationInfo, field_validator, model_validator

from ladder.metrics import Metric, MetricConfig
from ladder.types import Example, Score

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
GSM8K = re.compile(r"####\s*(-?[\d,]*\.?\d+)")

# --- lm-evaluation-harness parity ---------------------------------------------------------------
# LM_EVAL: lm_eval/tasks/gsm8k/gsm8k.yaml (task metadata version 3.0), as of EleutherAI/lm-evaluation-
# harness commit b733598 (2026-01-27, in v0.4.10) and unchanged through v0.4.12 / main 4e7e0d4:
#   filter_list:
#     strict-match:     regex "#### (\-?[0-9\.\,]+)", then take_first
#     flexible-extract: regex "(-?[$0-9.,]{2,})|(-?[0-9]+)" with group_select -1, then take_first
#   metric exact_match: ignore_case true, ignore_punctuation false,
#                       regexes_to_ignore [",", "\$", "(?s).*#### ", "\.$"]
# RegexFilter (lm_eval/filters/extraction.py): findall, take match[group_select]; a tuple of groups
# gives its first non-empty group; .strip(); no match gives the fallback "[invalid]".
# exact_match_hf_evaluate (lm_eval/api/metrics.py): each regex in order is re.sub'd to "" in BOTH
# the prediction and the reference, then both are lower-cased, then compared as strings. So
# "540.00" is not "540", "$18" after '#### ' is no match at all, and "18." equals "18".
STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")
INVALID = "[invalid]"
LM_EVAL_RULES = {"gsm8k_strict": (STRICT, 0), "gsm8k_flexible": (FLEXIBLE, -1)}

BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")

Extract = Literal["last", "first", "gsm8k", "gsm8k_strict", "gsm8k_flexible", "gsm8k_lenient", "boxed"]


def lm_eval_filter(text: str, how: str) -> str | None:
    """lm-eval's RegexFilter + take_first for one response; None where it returns "[invalid]"."""
    regex, group_select = LM_EVAL_RULES[how]
    found = regex.findall(text)
    if not found:
        return None
    m = found[group_select]
    if isinstance(m, tuple):
        m = next((g for g in m if g), None)  # no non-empty group: lm-eval's fallback too
    return None if m is None else m.strip()


def lm_eval_exact_match(prediction: str, reference: str) -> bool:
    """lm-eval's exact_match with gsm8k.yaml's options, on one prediction/reference pair."""
    for pattern in IGNORE:
        prediction, reference = re.sub(pattern, "", prediction), re.sub(pattern, "", reference)
    return prediction.lower() == reference.lower()


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}), nested braces matched; None when
    there is none or its braces never close."""
    starts = list(BOXED.finditer(text))
    if not starts:
        return None
    depth, begin = 1, starts[-1].end()
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i].strip()
    return None


def extract_number(text: str, how: str) -> float | None:
    if how == "gsm8k_lenient":
        m = GSM8K.search(text)
        if m:
            return _to_float(m.group(1))
        how = "last"  # models often skip the marker; fall back rather than score 0
    found = NUMBER.findall(text)
    if not found:
        return None
    return _to_float(found[0] if how == "first" else found[-1])


def _to_float(s: str) -> float | None:
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return None


def _boxed_key(s: str) -> str:
    return re.sub(r"\s+|\\!|^\$|\$$", "", s)


def _gold_boxed(target: str) -> str:
    boxed = last_boxed(target)
    if boxed is not None:
        return boxed
    return target.rsplit("####", 1)[1].strip() if "####" in target else target.strip()


def boxed_equal(got: str, want: str, tolerance: float) -> bool:
    a, b = _boxed_key(got), _boxed_key(want)
    x, y = _to_float(a), _to_float(b)
    if x is not None and y is not None:
        return abs(x - y) <= tolerance
    return a == b


class NumericConfig(MetricConfig):
    type: Literal["numeric"] = "numeric"
    extract: Extract = "last"
    """Where the answer is: last | first (number), gsm8k_strict | gsm8k_flexible (lm-eval-harness's
    gsm8k strict-match / flexible-extract, exactly), gsm8k (= gsm8k_strict), gsm8k_lenient (after
    '####' else the last number) or boxed (the last \\boxed{...})."""
    tolerance: float = 1e-6
    """Absolute tolerance of a numeric comparison, for last, first, gsm8k_lenient and boxed only
    (leave it out with gsm8k_strict / gsm8k_flexible, which compare strings as lm-eval does)."""

    @model_validator(mode="before")
    @classmethod
    def _alias(cls, data):
        # Resolved here, so experiment.yaml and the run id record the rule that actually scored.
        if isinstance(data, dict) and data.get("extract") == "gsm8k":
            data = {**data, "extract": "gsm8k_strict"}
        return data

    @field_validator("tolerance")
    @classmethod
    def _no_tolerance_for_strings(cls, v: float, info: ValidationInfo) -> float:
        # Runs only when tolerance is given (defaults are not validated).
        if info.data.get("extract") in LM_EVAL_RULES:
            raise ValueError(f"extract {info.data['extract']} compares strings exactly as lm-eval-harness "
                             "does, so a tolerance would be ignored")
        return v


class Numeric(Metric):
    Config = NumericConfig
    extracts = True

    def score(self, ex: Example, completion: str) -> Score:
        how = self.config.extract
        if how in LM_EVAL_RULES:
            got = lm_eval_filter(completion, how)
            ok = lm_eval_exact_match(INVALID if got is None else got, ex.target)
            return Score(float(ok), extracted=got)
        if how == "boxed":
            got = last_boxed(completion)
            ok = got is not None and boxed_equal(got, _gold_boxed(ex.target), self.config.tolerance)
            return Score(float(ok), extracted=got)
        want = extract_number(ex.target, "gsm8k_lenient")
        num = extract_number(completion, how)
        ok = want is not None and num is not None and abs(num - want) <= self.config.tolerance
        # 15 significant digits: a float's repr without its noise, and no two answers a vote
        # could tell apart collapse into one string (":g" kept 6, so 1234567 == 1234568).
        return Score(float(ok), extracted=None if num is None else f"{num:.15g}")
