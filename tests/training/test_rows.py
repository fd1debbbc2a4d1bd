"""Supervised rows: the data-file formats the sft stage reads, and the chat-template check."""

from __future__ import annotations

import pytest

from ladder.errors import DataError
from ladder.training.rows import TrainRow, read_sft_file, template_guards
from ladder.types import Message
from tests.conftest import write_jsonl


def test_sft_data_file_formats(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [
        {"id": "a", "prompt": [{"role": "user", "content": "q1"}],  # best_of_n's export row
         "completion": [{"role": "assistant", "content": "a1"}], "score": 1.0,
         "messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]},
        {"prompt": "q2", "completion": "a2"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q3"},
                      {"role": "assistant", "content": "a3"}]},
    ])
    rows = read_sft_file(path)
    assert [(r.prompt, r.completion) for r in rows] == [
        ([Message("user", "q1")], "a1"), ([Message("user", "q2")], "a2"),
        ([Message("system", "s"), Message("user", "q3")], "a3")]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": [{"role": "user", "content": "q"}],
                                               "completion": [{"role": "user", "content": "x"}]}])
    with pytest.raises(DataError, match="row 1"):
        read_sft_file(bad)
    with pytest.raises(DataError, match="does not exist"):
        read_sft_file(tmp_path / "missing.jsonl")


def test_template_without_eos_after_the_answer_is_flagged(random_model):
    from ladder.backends.hf import HFBackend, HFConfig

    backend = HFBackend(HFConfig(name=str(random_model)))
    row = TrainRow([Message("user", "Review: fine")], "neutral")
    backend.tokenizer.chat_template = backend.tokenizer.chat_template.replace("<|end|>", "\n\n")
    (g,) = template_guards(backend, row)
    assert g.name == "template_eos" and g.level == "warn"
