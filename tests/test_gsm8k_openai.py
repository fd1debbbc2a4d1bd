"""configs/gsm8k_openai.yaml through the fake API server (real openai SDK over HTTP), on the
GSM8K-shaped sample in tests/data/gsm8k; and on the real ../shared/data/gsm8k when it is there.

The fake model's answers are scripted per question, and every expected number below is counted
by hand from those scripts with lm-eval's rules (see tests/metrics/test_extraction_parity.py)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from ladder.config import load_experiment
from ladder.runner import run_experiment
from ladder.store import read_jsonl
from ladder.testing.fake_api import FakeAPIServer, FakeRequest
from tests.backends.api_support import FAST, KEY, KEY_ENV
from tests.conftest import REPO

CONFIG = REPO / "configs" / "gsm8k_openai.yaml"
SAMPLE = REPO / "tests" / "data" / "gsm8k"
SHARED = REPO.parent / "shared" / "data" / "gsm8k"

# Question (its first words) → the 5 samples the fake model gives, in index order; greedy calls
# get sample 0. Then, counted by hand: the strict-match extractions and the majority pick.
SCRIPTS = {
    "A farmer collects": ["9 * 2 = 18\n#### 18", "#### 18", "#### 20", "The answer is 18", "#### 18"],
    "A shop sells": ["#### 540.00", "#### 540", "#### 540.00", "#### 45", "#### 540"],
    "Ana has": ["####7", "####7", "#### 8", "####7", "#### 7"],
    "A school orders": ["#### 1,234", "#### 1234", "#### 1,234", "#### 999", "#### 999"],
    "Ben has": ["#### 11", "#### 12", "#### 13", "#### 12", "#### 11"],
    "The temperature": ["#### -3", "#### 3", "#### 3", "#### 3", "#### -3"],
    "A class of": ["#### 19", "#### 20", "#### 20", "#### 20", "#### 19"],
    "A ticket costs": ["#### $5", "#### 5", "#### 5", "#### 6", "#### 6."],
}
# (selected sample, its extracted answer, correct) of the majority vote under each rule.
STRICT_PICKS = {
    "A farmer collects": (0, "18", 1),          # 18 ×3
    "A shop sells": (0, "540.00", 0),           # "540.00" ×2 ties "540" ×2: the first; strings, as lm-eval
    "Ana has": (0, None, 0),                    # "####7" is no strict match ×3: no answer wins
    "A school orders": (0, "1,234", 1),         # "1,234" ×2 ties "999" ×2: the first
    "Ben has": (0, "11", 0),                    # 11 ×2 ties 12 ×2: the first
    "The temperature": (1, "3", 0),             # 3 ×3
    "A class of": (1, "20", 1),                 # 20 ×3
    "A ticket costs": (1, "5", 1),              # 5 ×2; "$5" is no match, "6" and "6." are two answers
}
FLEXIBLE_PICKS = {
    "A farmer collects": (0, "18", 1),
    "A shop sells": (0, "540.00", 0),
    "Ana has": (0, "7", 1),                     # flexible reads the 7 of "####7" ×4
    "A school orders": (0, "1,234", 1),
    "Ben has": (0, "11", 0),
    "The temperature": (1, "3", 0),
    "A class of": (1, "20", 1),
    "A ticket costs": (1, "5", 1),              # "$5", 5, 5, 6, "6.": 5 ×2
}
# Greedy (sample 0) verdicts: strict 18, 1,234, -3 right; flexible also 7 and $5.
ZERO = {"gsm8k_strict": 3 / 8, "gsm8k_flexible": 5 / 8}
PICKS = {"gsm8k_strict": STRICT_PICKS, "gsm8k_flexible": FLEXIBLE_PICKS}


def script_of(prompt: str) -> list[str]:
    question = prompt.rsplit("Question: ", 1)[-1]
    return next(s for start, s in SCRIPTS.items() if question.startswith(start))


def scripted(req: FakeRequest, index: int) -> str:
    return script_of(req.prompt)[index]


def load(tmp_path: Path, srv: FakeAPIServer, data: Path, *more: str):
    sets = [f"results_dir={tmp_path / 'results'}", f"model.base_url={srv.base_url}", f"model.api_key_env={KEY_ENV}",
            f"task.data.train={data / 'train.jsonl'}", f"task.data.test={data / 'test.jsonl'}",
            *(f"model.{k}={v}" for k, v in FAST.items()), *more]
    return load_experiment(CONFIG, sets)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.mark.parametrize("rule", ["gsm8k_strict", "gsm8k_flexible"])
def test_the_shipped_config_on_the_sample(tmp_path, rule):
    with FakeAPIServer(responder=scripted) as srv:
        exp = load(tmp_path, srv, SAMPLE, "subsample.n=all", "stages.2.n=5", "stages.3.n=5",
                   f"metric.extract={rule}")
        zero, few, vote, oracle = run_experiment(exp)
    assert [r.metric.n for r in (zero, few, vote, oracle)] == [8] * 4
    assert zero.metric.value == few.metric.value == pytest.approx(ZERO[rule])
    picks = PICKS[rule]
    assert vote.metric.value == pytest.approx(sum(ok for _, _, ok in picks.values()) / 8)
    folder = tmp_path / "results" / "gsm8k_openai"
    for rec in read_jsonl(folder / "majority_of_8" / vote.run_id / "samples.jsonl"):
        start = next(s for s in SCRIPTS if rec["prompt"][-1]["content"].split("Question: ")[-1].startswith(s))
        assert (rec["selected"], rec["answer"], rec["score"]) == picks[start], start
    assert vote.extra.selector["oracle"] is False and not any(g.name == "oracle" for g in vote.guards)
    assert oracle.extra.selector["oracle"] is True
    # The oracle picks any right sample, and every script has one (Ana's last is "#### 7"): the
    # gap to the vote is what reading the gold answer buys.
    assert oracle.metric.value == 1.0
    # majority@k: k=1 is any one sample, k=N the stage's own number; exact for N=5.
    curve = vote.extra.curve
    everything = [s["score"] for rec in read_jsonl(folder / "majority_of_8" / vote.run_id / "samples.jsonl")
                  for s in rec["samples"]]
    assert [p["k"] for p in curve] == [1, 2, 4, 5]
    assert curve[0]["majority"] == pytest.approx(sum(everything) / len(everything))
    assert curve[-1]["majority"] == pytest.approx(vote.metric.value)
    assert vote.extra.majority_curve == "exact enumeration of every k-subset"
    # The oracle's stage draws the same line beside its best-of-k.
    assert [p["majority"] for p in oracle.extra.curve] == pytest.approx([p["majority"] for p in curve])
    metrics = json.loads((folder / "majority_of_8" / vote.run_id / "metrics.json").read_text())
    assert metrics["extra"]["curve"][-1]["oracle_best_of_k"] == pytest.approx(oracle.metric.value)


@pytest.mark.skipif(not (SHARED / "test.jsonl").exists(), reason="../shared/data/gsm8k is not on this machine")
def test_the_shipped_config_on_real_gsm8k(tmp_path):
    """The config as shipped (its data paths), 40 real test problems; the fake model answers with
    the gold number, in the strict format for about half the questions and as a sentence for
    the rest, so strict-match scores exactly the formatted ones."""
    gold = {}
    for line in (SHARED / "test.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        gold[row["question"]] = row["answer"].rsplit("#### ", 1)[1].strip()

    def formatted(question: str) -> bool:
        return zlib.crc32(question.encode()) % 2 == 0

    def respond(req: FakeRequest, index: int) -> str:
        question = req.prompt.rsplit("Question: ", 1)[-1].removesuffix("\nAnswer:")
        answer = gold[question]
        return f"Working.\n#### {answer}" if formatted(question) else f"The answer is {answer}."

    with FakeAPIServer(responder=respond) as srv:
        sets = [f"results_dir={tmp_path / 'results'}", f"model.base_url={srv.base_url}",
                f"model.api_key_env={KEY_ENV}", "subsample.n=40", *(f"model.{k}={v}" for k, v in FAST.items())]
        (zero,) = run_experiment(load_experiment(CONFIG, sets), only=["zero_shot"])
    rows = read_jsonl(tmp_path / "results/gsm8k_openai/zero_shot" / zero.run_id / "samples.jsonl")
    assert len(rows) == 40
    for rec in rows:
        question = rec["prompt"][-1]["content"].rsplit("Question: ", 1)[-1].removesuffix("\nAnswer:")
        assert rec["score"] == float(formatted(question))
    assert zero.metric.value == pytest.approx(sum(formatted(q) for q in
                                                  [r["prompt"][-1]["content"].rsplit("Question: ", 1)[-1]
                                                   .removesuffix("\nAnswer:") for r in rows]) / 40)
