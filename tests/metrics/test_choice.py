"""choice and choice_prob per example: K varies, letters, and lm-eval's length normalisations."""

import math

import pytest

from ladder.errors import LadderError
from ladder.metrics import build_metric
from ladder.metrics.choice import ChoiceConfig
from ladder.metrics.probability import ChoiceProbConfig
from ladder.types import Example

EX = Example(id="1", fields={}, target="Positive")


TWO = Example(id="k2", fields={}, target="Eight", choices=("Six", "Eight"))
FIVE = Example(id="k5", fields={}, target="Jupiter", choices=("Mars", "Earth", "Jupiter", "Venus", "Saturn"))


def test_choice_per_example_k():
    m = build_metric(ChoiceConfig())
    assert m.score(TWO, "Eight legs").value == 1.0
    assert m.score(FIVE, "Jupiter, the gas giant").value == 1.0
    assert m.score(FIVE, "Saturn").extracted == "Saturn"
    assert m.score(TWO, "Jupiter").extracted is None  # another example's choice is no answer here


def test_choice_compares_letters():
    letters = Example(id="l", fields={}, target="C", choices=("A", "B", "C", "D"))
    m = build_metric(ChoiceConfig())
    for text in ["C", "c", "C.", "(C)", "C) Jupiter", "**C**", "C: Jupiter", "The answer is C", "Answer: (C)"]:
        assert m.score(letters, text).value == 1.0, text
    # The article "A" is not answer A; a letter beyond this example's K is no answer.
    assert m.score(letters, "A good answer is C").extracted == "C"
    assert m.score(letters, "E").extracted is None
    assert m.score(letters, "Jupiter").extracted is None
    assert build_metric(ChoiceConfig(parse="exact")).score(letters, "The answer is C").value == 0.0


def softmax_share(values, i):
    return math.exp(values[i]) / sum(math.exp(v) for v in values)


@pytest.mark.parametrize("normalize", ["none", "tokens", "chars"])
def test_choice_prob_per_example_k_and_each_normalisation(normalize):
    ex = Example(id="n", fields={}, target="bbbb", choices=("a", "bbbb", "cc"))
    lps, tokens = [-2.0, -4.0, -3.0], [1, 1, 3]
    divisor = {"none": [1, 1, 1], "tokens": tokens, "chars": [1, 4, 2]}[normalize]
    scaled = [lp / d for lp, d in zip(lps, divisor)]
    best = ex.choices[scaled.index(max(scaled))]
    for cfg_score in ("probability", "accuracy"):
        m = build_metric(ChoiceProbConfig(normalize=normalize, score=cfg_score))
        s = m.score_logprobs(ex, lps, token_counts=tokens)
        assert s.extracted == best
        want = softmax_share(scaled, 1) if cfg_score == "probability" else float(best == "bbbb")
        assert s.value == pytest.approx(want)
    # The three rules disagree on this example, as they do in lm-eval: acc picks 'a', acc_norm 'bbbb'.
    assert best == {"none": "a", "tokens": "cc", "chars": "bbbb"}[normalize]
    # K varies per example: two choices score over two.
    two = build_metric(ChoiceProbConfig(normalize=normalize)).score_logprobs(TWO, [-1.0, -1.0], token_counts=[1, 1])
    if normalize != "chars":
        assert two.value == pytest.approx(0.5)
    else:  # -1/3 ('Six') vs -1/5 ('Eight')
        assert two.value == pytest.approx(softmax_share([-1 / 3, -1 / 5], 1))


def test_choice_prob_without_choices_is_a_clear_error():
    with pytest.raises(LadderError, match="example 1 has no answer choices"):
        build_metric(ChoiceProbConfig()).continuations(EX)


def test_choice_prob_name_says_which_rule():
    assert build_metric(ChoiceProbConfig()).name == "choice_prob"
    assert build_metric(ChoiceProbConfig(normalize="chars", score="accuracy")).name == "choice_prob[acc,norm=chars]"
