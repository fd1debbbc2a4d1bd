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


def write_lines(path, lines, encoding="utf-8"):
    path.write_text("".join(line + "\n" for line in lines), encoding=encoding)
    return path


@pytest.mark.parametrize("labels,target_map", [
    ([0, 1, 1, 0], {0: "negative", 1: "positive"}),           # JSON numbers, YAML number keys
    ([0.0, 1.0, 1.0, 0.0], {0: "negative", 1: "positive"}),   # a float column of whole numbers
    ([False, True, True, False], {True: "positive", False: "negative"}),
    (["0", "1", "1", "0"], {0: "negative", 1: "positive"}),   # text labels, as a CSV gives them
])
def test_target_map_maps_number_and_boolean_labels(tmp_path, labels, target_map):
    import json

    write_lines(tmp_path / "d.jsonl", [json.dumps({"text": f"r{i}", "label": v}) for i, v in enumerate(labels)])
    t = task(tmp_path, data={"train": "d.jsonl", "test": "d.jsonl"}, target_map=target_map,
             choices=["negative", "positive"])
    assert [e.target for e in t.examples("test")] == ["negative", "positive", "positive", "negative"]


@pytest.mark.parametrize("rows,needle", [
    # Every target a list: the plain reader refuses nesting, and `datasets` would load the lists.
    ([{"text": "a", "label": ["x", "y"]}, {"text": "b", "label": ["z"]}],
     "line 1 of 'd.jsonl' has a list as its target (['x', 'y']) in column 'label'"),
    # One list among text: pyarrow would turn the whole column into JSON text and score '"x"'.
    ([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}, {"text": "c", "label": ["x", "y"]}],
     "line 3 of 'd.jsonl' has a list as its target"),
    ([{"text": "a", "label": {"answer": "x"}}], "line 1 of 'd.jsonl' has a mapping as its target"),
    ([{"text": "a", "label": True}, {"text": "b", "label": False}],
     "row 1 of the 'train' data (d.jsonl) has the boolean true as its target in column 'label'"),
])
def test_targets_that_are_not_one_answer_are_refused(tmp_path, rows, needle):
    import json

    write_lines(tmp_path / "d.jsonl", [json.dumps(r) for r in rows])
    with pytest.raises(DataError) as info:
        task(tmp_path, data={"train": "d.jsonl", "test": "d.jsonl"}).examples("test")
    assert needle in info.value.render() and "Fix:" in info.value.render()


def test_a_gold_shot_with_a_list_target_is_refused(tmp_path):
    t = task(tmp_path, data="d.jsonl")
    with pytest.raises(DataError, match="shot 1 has a list as its target"):
        t.make_example({"text": "a", "label": ["x"]}, "shot-1", field="shot 1")


def test_duplicate_keys_and_utf16_are_named(tmp_path):
    write_lines(tmp_path / "dup.jsonl", ['{"text": "a", "label": "x"}', '{"text": "b", "label": "x", "label": "y"}'])
    with pytest.raises(DataError, match="dup.jsonl' line 2 has the key \"label\" twice"):
        task(tmp_path, data="dup.jsonl").examples("test")
    lines = ['{"text": "a", "label": "x"}', '{"text": "b", "label": "y"}']
    for encoding, name in (("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-32", "UTF-32")):
        write_lines(tmp_path / "wide.jsonl", lines, encoding)
        with pytest.raises(DataError) as info:
            task(tmp_path, data="wide.jsonl").examples("test")
        msg = info.value.render()
        assert f"wide.jsonl' is {name} text, not UTF-8" in msg and f"iconv -f {name} -t UTF-8" in msg
        assert "latin1" not in msg
