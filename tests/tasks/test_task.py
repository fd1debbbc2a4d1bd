"""Data loading through `datasets`, splitting, field checks and rendering."""

from __future__ import annotations

import pytest

from ladder.config import TaskConfig
from ladder.errors import DataError
from ladder.tasks import Task
from ladder.types import Message
from tests.conftest import make_rows, write_jsonl


def task(tmp_path, **cfg) -> Task:
    cfg.setdefault("target", "label")
    cfg.setdefault("template", "Review: {text}")
    return Task(TaskConfig(**cfg), tmp_path, seed=0, where="exp.yaml")


def test_single_file_is_split_with_seed(tmp_path):
    write_jsonl(tmp_path / "all.jsonl", make_rows(100))
    a = task(tmp_path, data="all.jsonl", test_size=0.25)
    b = task(tmp_path, data="all.jsonl", test_size=0.25)
    assert len(a.examples("test")) == 25 and len(a.examples("train")) == 75
    assert [e.id for e in a.examples("test")] == [e.id for e in b.examples("test")]
    test_texts = {e.fields["text"] + e.id for e in a.examples("test")}
    assert not test_texts & {e.fields["text"] + e.id for e in a.examples("train")}


def test_split_mapping_and_csv_tsv(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\ngood,positive\nbad,negative\n")
    (tmp_path / "test.csv").write_text('text,label\n"fine, really",neutral\n')
    t = task(tmp_path, data={"train": "train.csv", "test": "test.csv"})
    assert t.examples("test")[0].fields["text"] == "fine, really"
    (tmp_path / "dev.tsv").write_text('sentence\tlabel\nit \'s "fine"\t1\nbad\t0\n')
    t = task(tmp_path, data={"test": "dev.tsv", "train": "dev.tsv"}, template="{sentence}",
             target_map={"0": "negative", "1": "positive"}, choices=["negative", "positive"])
    ex = t.examples("test")[0]
    assert ex.fields["sentence"] == 'it \'s "fine"' and ex.target == "positive"


def test_render_shapes_messages(tmp_path):
    write_jsonl(tmp_path / "all.jsonl", make_rows(10))
    t = task(tmp_path, data="all.jsonl", instruction="Classify.")
    ex, shot = t.examples("test")[0], t.examples("train")[0]
    msgs = t.render(ex, [shot])
    assert msgs[0] == Message("system", "Classify.")
    assert msgs[1] == Message("user", f"Review: {shot.fields['text']}")
    assert msgs[2] == Message("assistant", shot.target)
    assert msgs[3] == Message("user", f"Review: {ex.fields['text']}")


@pytest.mark.parametrize("cfg,needle,field", [
    ({"template": "Review: {body}"}, "names column 'body'", "task.template"),
    ({"target": "gold"}, "names column 'gold'", "task.target"),
    ({"choices": ["good", "bad"]}, "is not one of the choices", "task.choices"),
    ({"target_map": {"x": "y"}}, "is not a key of target_map", "task.target_map"),
    ({"test_split": "validation", "data": {"train": "all.jsonl", "dev": "all.jsonl"}}, "no 'validation' split", "task.test_split"),
    ({"data": "missing.jsonl"}, "does not exist", "task.data"),
    ({"data": "all.txt"}, "does not exist", "task.data"),
])
def test_bad_data_errors_name_the_field(tmp_path, cfg, needle, field):
    write_jsonl(tmp_path / "all.jsonl", make_rows(10))
    cfg.setdefault("data", "all.jsonl")
    with pytest.raises(DataError) as info:
        task(tmp_path, **cfg).examples("test")
    msg = info.value.render()
    assert needle in msg and field in msg and "exp.yaml" in msg and "Fix:" in msg


def test_empty_and_broken_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="cannot load the data|empty"):
        task(tmp_path, data="empty.jsonl").examples("test")
    (tmp_path / "broken.jsonl").write_text('{"text": "a", "label": "b"}\n{not json\n')
    with pytest.raises(DataError, match="broken.jsonl' line 2 is not valid JSON"):
        task(tmp_path, data="broken.jsonl").examples("test")
    # datasets' own message names neither file nor line; the diagnosis finds both.
    (tmp_path / "latin1.jsonl").write_bytes('{"text": "caf\u00e9", "label": "b"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="latin1.jsonl' is not valid UTF-8: line 1 has byte 0xe9"):
        task(tmp_path, data="latin1.jsonl").examples("test")


def test_hub_id_offline_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="cannot load the data"):
        task(tmp_path, data="someone/some-dataset").examples("test")
