"""Each metric family on hand-made cases."""

from ladder.metrics import build_metric
from ladder.metrics.match import ExactMatchConfig, IncludesConfig, RegexConfig
from ladder.metrics.numeric import NumericConfig, extract_number
from ladder.metrics.choice import ChoiceConfig
from ladder.metrics.python import PythonConfig
from ladder.types import Example, Score

EX = Example(id="1", fields={}, target="Positive")
CHOICE = Example(id="2", fields={}, target="negative", choices=("positive", "negative", "neutral"))


def score(config, ex, text):
    return build_metric(config).score(ex, text).value


def test_exact_match_normalisation():
    assert score(ExactMatchConfig(), EX, "  positive. ") == 1.0
    assert score(ExactMatchConfig(), EX, "positive!!") == 1.0
    assert score(ExactMatchConfig(normalize={"lowercase": False}), EX, "positive") == 0.0
    assert score(ExactMatchConfig(), EX, "positive, I think") == 0.0


def test_includes():
    assert score(IncludesConfig(), EX, "I would say POSITIVE overall") == 1.0
    assert score(IncludesConfig(), EX, "negative") == 0.0


def test_regex():
    cfg = RegexConfig(pattern=r"Answer: (\w+)", which="last")
    assert score(cfg, EX, "Answer: negative ... Answer: positive") == 1.0
    assert score(cfg, EX, "no answer") == 0.0


def test_numeric_extraction():
    assert extract_number("so 3 apples and 12.5 pears", "last") == 12.5
    assert extract_number("so 3 apples", "first") == 3
    assert extract_number("work... #### 1,234", "gsm8k_lenient") == 1234
    assert extract_number("no marker, answer 42", "gsm8k_lenient") == 42
    assert extract_number("none here", "last") is None
    gsm = Example(id="g", fields={}, target="She makes 9 * 2 = $18.\n#### 18")
    assert score(NumericConfig(extract="gsm8k"), gsm, "9*2 = 18\n#### 18") == 1.0
    assert score(NumericConfig(), gsm, "The answer is 18.") == 1.0
    assert score(NumericConfig(), gsm, "The answer is 17.") == 0.0


def test_choice_parsing():
    m = build_metric(ChoiceConfig())
    assert m.score(CHOICE, "Negative.").value == 1.0
    assert m.score(CHOICE, "negative, clearly not positive").value == 1.0
    assert m.score(CHOICE, "it is positive, not negative").value == 0.0
    s = m.score(CHOICE, "no idea")
    assert s.value == 0.0 and s.extracted is None and s.meta["parsed"] is False
    assert build_metric(ChoiceConfig(parse="exact")).score(CHOICE, "negative, surely").value == 0.0
    assert m.score(CHOICE, "nonnegative").value == 0.0  # whole words only


def length_reward(ex, completion):
    return len(completion) / 10


def graded(ex, completion):
    return Score(0.5, extracted="half")


def test_python_metric():
    assert score(PythonConfig(function="tests.metrics.test_metrics:length_reward"), EX, "abcde") == 0.5
    assert score(PythonConfig(function="tests.metrics.test_metrics:graded"), EX, "x") == 0.5
