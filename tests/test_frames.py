"""`ladder.load`: an experiment's results as pandas DataFrames."""

from __future__ import annotations

import pytest

import ladder
from ladder.config import load_experiment
from ladder.errors import LadderError
from ladder.runner import run_experiment
from ladder.store import read_json, read_jsonl
from ladder.table import read_summary
from ladder.testing.fake_api import FakeAPIServer
from tests.backends.api_support import KEY, KEY_ENV, api_experiment, varied

pd = pytest.importorskip("pandas")


def test_load_gives_stage_and_sample_frames(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    stages = [{"type": "zero_shot"}, {"type": "best_of_n", "n": 3}]
    with FakeAPIServer(responder=varied) as srv:
        path = api_experiment(tmp_path, "openai", srv.base_url, stages=stages, subsample={"n": 12})
        run_experiment(load_experiment(path))
    folder = tmp_path / "results" / "t"
    res = ladder.load(folder)
    st, sa = res.stages, res.samples
    assert isinstance(st, pd.DataFrame) and isinstance(sa, pd.DataFrame)
    # stages: summary.csv, numbers as numbers and blanks as NaN
    summary = read_summary(folder)
    assert list(st.stage) == ["zero_shot", "best_of_n"] and list(st.n) == [12, 12]
    assert st.value.tolist() == pytest.approx([r["value"] for r in summary])
    assert pd.isna(st.diff_prev[0]) and st.diff_prev[1] == pytest.approx(summary[1]["diff_prev"])
    assert "diff_prev_mde" in st.columns
    # samples: one row per sample, 12 + 12·3, with the columns the issue names
    assert len(sa) == 12 + 36
    for col in ("example_id", "stage", "variant", "prompt", "completion", "score", "finish_reason"):
        assert col in sa.columns
    bon = sa[sa.stage == "best_of_n"]
    assert bon.groupby("example_id").size().eq(3).all() and bon.selected.sum() == 12
    # an example's stage score is its selected sample's score; the means are the table's values
    assert bon[bon.selected].score.tolist() == bon[bon.selected].example_score.tolist()
    per_example = sa.drop_duplicates(["stage", "example_id"]).groupby("stage", sort=False).example_score.mean()
    assert per_example.tolist() == pytest.approx(st.value.tolist(), abs=1e-6)
    # the text is what samples.jsonl holds, and content digests are the manifest's
    rec = read_jsonl(folder / "zero_shot" / summary[0]["run_id"] / "samples.jsonl")[0]
    row = sa[(sa.stage == "zero_shot") & (sa.example_id == rec["id"])].iloc[0]
    assert row.completion == rec["samples"][0]["text"] and row.prompt == rec["prompt"][-1]["content"]
    sub = read_json(folder / "manifest.json")["subsample"]
    assert row.content == sub["content"][sub["ids"].index(rec["id"])]
    with pytest.raises(LadderError, match="no summary.csv"):
        ladder.load(tmp_path)


def test_without_pandas_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(LadderError, match=r"pip install 'ladder\[data\]'"):
        ladder.load(tmp_path)


def test_samples_carry_the_answer_the_data_fields_and_the_kept_sample(tmp_path, monkeypatch):
    """What analysis needs beside the prompt: the metric's extracted answer, the example's own data
    fields, and which sample each stage kept (best_of_n: its selected one)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    stages = [{"type": "zero_shot"}, {"type": "best_of_n", "n": 3}]
    with FakeAPIServer(responder=lambda req, i: f"I would say {varied(req, i)}, overall.") as srv:
        path = api_experiment(tmp_path, "openai", srv.base_url, stages=stages, subsample={"n": 12})
        run_experiment(load_experiment(path))
    folder = tmp_path / "results" / "t"
    sa = ladder.load(folder).samples
    # the answer is what the metric parsed, not the completion
    assert (sa.answer != sa.completion).all() and set(sa.answer) <= {"positive", "negative", "neutral"}
    assert all(a in c for a, c in zip(sa.answer, sa.completion))
    # the data fields of each example, as in the test file (not only the rendered prompt)
    rows = {r["text"]: r for r in read_jsonl(tmp_path / "data" / "test.jsonl")}
    assert "text" in sa.columns and "fields" in sa.columns
    for _, s in sa.iterrows():
        assert s.prompt == f"Review: {s.text}" and s.fields["text"] == s.text
        assert rows[s.text]["label"] == s.target
    # one kept sample per example and stage: best_of_n's selected one, zero_shot's only one
    assert sa.groupby(["stage", "example_id"]).kept.sum().eq(1).all()
    bon = sa[sa.stage == "best_of_n"]
    assert (bon.kept == bon.selected.astype(bool)).all()
    assert sa[sa.stage == "zero_shot"].kept.all()
    assert bon[bon.kept].score.tolist() == bon[bon.kept].example_score.tolist()
