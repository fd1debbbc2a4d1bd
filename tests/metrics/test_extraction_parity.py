"""numeric extraction rules on tricky completions, each verdict worked out by hand from
lm-evaluation-harness's gsm8k.yaml (not from ladder's output):

  strict-match      first match of  #### (\\-?[0-9\\.\\,]+)                        then exact_match
  flexible-extract  last match of   (-?[$0-9.,]{2,})|(-?[0-9]+) (first non-empty group)
  exact_match       re.sub to "" of  ","  "\\$"  "(?s).*#### "  "\\.$"  in order, on the
                    prediction AND the reference, then lower-case; no match is "[invalid]" (wrong)

`lenient` is ladder's old gsm8k rule (number after '####', spaces optional, else the last number;
floats) and `boxed` the last \\boxed{...}."""

from __future__ import annotations

import pytest

from ladder.metrics import build_metric
from ladder.metrics.numeric import NumericConfig, last_boxed
from ladder.types import Example

GSM = "She sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs for $2 each: 9 * 2 = $<<9*2=18>>18.\n#### 18"
RULES = ("gsm8k_strict", "gsm8k_flexible", "gsm8k_lenient", "boxed")

# completion, target, then the verdict of strict, flexible, lenient, boxed (1 correct, 0 wrong)
CASES = [
    # the clean format: everything but boxed agrees
    ("9 * 2 = 18\n#### 18", GSM, 1, 1, 1, 0),
    # '$' is not in strict's class, so '#### $18' is no match; flexible keeps '$18', then drops '$'
    ("She makes 9 * 2 = 18 dollars.\n#### $18", GSM, 0, 1, 1, 0),
    # '540.00' keeps its zeros (only one trailing '.' is ignored): wrong for both lm-eval rules
    ("4 * 135 = 540\n#### 540.00", "#### 540", 0, 0, 1, 0),
    # strict needs the space after ####; flexible's last match is the lone digit (group 2)
    ("5 + 2 = 7 ####7", "#### 7", 0, 1, 1, 0),
    # no ####: flexible takes '163' (the brace is not in its class)
    ("So the total is \\boxed{163}.", "#### 163", 0, 1, 1, 1),
    ("The answer is 20", "#### 20", 0, 1, 1, 0),
    # flexible's '20.' loses its one trailing period
    ("The answer is 20.", "#### 20", 0, 1, 1, 0),
    # commas are ignored on both sides, wherever they are
    ("#### 1,234", "#### 1234", 1, 1, 1, 0),
    ("#### 1234", "It is 1,000 + 234 = 1,234.\n#### 1,234", 1, 1, 1, 0),
    ("#### 3,5", "#### 35", 1, 1, 1, 0),
    # negatives: flexible's group 1 needs two class characters after '-', group 2 takes '-5'
    ("3 - 8 = -5\n#### -5", "#### -5", 1, 1, 1, 0),
    ("#### -1,200", "#### -1200", 1, 1, 1, 0),
    # a space after the sign: strict and lenient find no signed number, flexible finds '5'
    ("#### - 5", "#### -5", 0, 0, 0, 0),
    # '-$30.' is one flexible match; ignoring '$' then '.' leaves '-30'. ladder's number regex
    # cannot cross the '$', so lenient reads 30.
    ("The loss is -$30.", "#### -30", 0, 1, 0, 0),
    # one trailing period is ignored, after strict's class swallowed it
    ("#### 18.", GSM, 1, 1, 1, 0),
    ("#### 18. (That is 3 more than 15.)", GSM, 1, 0, 1, 0),
    # strict takes the first ####; flexible the last number
    ("#### 18\nQuestion: how many eggs? #### 5", GSM, 1, 0, 1, 0),
    ("#### 42\n\nQuestion: Tom has 7 cats.", "#### 42", 1, 0, 1, 0),
    ("#### 18 dollars", GSM, 1, 1, 1, 0),
    ("It costs $18.50 each, so #### 37", "#### 37", 1, 1, 1, 0),
    # two spaces: strict's class cannot start with a space
    ("####  18", GSM, 0, 1, 1, 0),
    # cents: '1000.00' is not '1000' as strings
    ("Total: $1,000.00", "#### 1000", 0, 0, 1, 0),
    # an ellipsis is a flexible match of its own: '5...' keeps two dots, '...' alone leaves '..'
    ("The answer is 5...", "#### 5", 0, 0, 1, 0),
    ("Answer: 5. Done...", "#### 5", 0, 0, 1, 0),
    ("#### 0.5", "#### 0.5", 1, 1, 1, 0),
    ("#### .5", "#### 0.5", 0, 0, 1, 0),
    # the reference is a string too: '18' is not '18.0'
    ("#### 18", "18.0", 0, 0, 1, 0),
    ("", GSM, 0, 0, 0, 0),
    ("I do not know.", GSM, 0, 0, 0, 0),
    # boxed: the last one, nested braces, commas, spaces, '$' around it
    ("\\boxed{12} but actually \\boxed{13}", "#### 13", 0, 1, 1, 1),
    ("\\boxed{13} since 12 is wrong", "#### 13", 0, 0, 0, 1),
    ("\\boxed{1,000}", "#### 1000", 0, 1, 1, 1),
    ("so $\\boxed{ 42 }$", "#### 42", 0, 1, 1, 1),
    ("\\boxed{42", "#### 42", 0, 1, 1, 0),  # never closed: no boxed answer
    # lenient compares the last numbers of both sides, 2 and 2; flexible compares '2' with the
    # whole LaTeX reference
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", 0, 0, 1, 1),
    ("\\boxed{\\dfrac{1}{2}}", "\\frac{1}{2}", 0, 0, 1, 0),  # no LaTeX normalisation
    # a MATH-style target with its reasoning: lenient reads the last number of each side (2, 2)
    ("The area is \\boxed{\\sqrt{2}}", "The side is 1, so the area is \\boxed{\\sqrt{2}}.", 0, 0, 1, 1),
]


def test_the_fixture_is_big_enough_and_tells_the_rules_apart():
    assert len(CASES) >= 30
    for i, rule in enumerate(RULES):
        for j in range(i):  # every pair of rules disagrees on some case
            assert any(c[2 + i] != c[2 + j] for c in CASES), (rule, RULES[j])


@pytest.mark.parametrize("completion,target,strict,flexible,lenient,boxed", CASES)
def test_verdicts(completion, target, strict, flexible, lenient, boxed):
    ex = Example(id="x", fields={}, target=target)
    got = {rule: build_metric(NumericConfig(extract=rule)).score(ex, completion).value for rule in RULES}
    assert got == {"gsm8k_strict": strict, "gsm8k_flexible": flexible, "gsm8k_lenient": lenient,
                   "boxed": boxed}


def test_gsm8k_means_strict_and_says_so():
    assert NumericConfig(extract="gsm8k").extract == "gsm8k_strict"
    assert NumericConfig(extract="gsm8k").model_dump()["extract"] == "gsm8k_strict"  # recorded as such


def test_extracted_is_what_lm_eval_filters_out():
    m = build_metric(NumericConfig(extract="gsm8k_strict"))
    ex = Example(id="x", fields={}, target=GSM)
    assert m.score(ex, "#### 1,018.\nmore").extracted == "1,018."
    assert m.score(ex, "no marker 18").extracted is None  # lm-eval's "[invalid]"
    flexible = build_metric(NumericConfig(extract="gsm8k_flexible"))
    assert flexible.score(ex, "costs $18, or -$30.").extracted == "-$30."


def test_last_boxed():
    assert last_boxed("\\boxed{a{b}{c{d}}} and \\fbox{x}") == "x"
    assert last_boxed("\\boxed {a{b}c}") == "a{b}c"
    assert last_boxed("no box") is None


def test_a_tolerance_is_refused_where_strings_are_compared():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="compares strings exactly"):
        NumericConfig(extract="gsm8k", tolerance=0.01)
    assert NumericConfig(extract="boxed", tolerance=0.01).tolerance == 0.01
    ex = Example(id="x", fields={}, target="#### 0.5")
    assert build_metric(NumericConfig(extract="boxed", tolerance=0.01)).score(ex, "\\boxed{0.505}").value == 1.0
