"""Per-example choices (task.choices_field), answer_format: letter, Jinja templates, custom factories."""

from __future__ import annotations

import csv
import sys
import types
from pathlib import Path

import pytest
from pydantic import ValidationError

from ladder.config import TaskConfig
from ladder.errors import DataError
from ladder.tasks import Task, load_task
from tests.conftest import write_jsonl

ROWS = [
    {"q": "Capital of France?", "best": "Paris", "wrong": "Lyon; Nice ;Marseille"},
    {"q": "Legs of a spider?", "best": "Eight", "wrong": "Six;Ten"},
    {"q": "Largest planet?", "best": "Jupiter", "wrong": "Mars;Earth;Venus;Saturn;Mercury"},
    {"q": "Freezing point of water in C?", "best": "0", "wrong": "10;-10;32"},
]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def task(tmp_path, rows=ROWS, seed=0, **cfg) -> Task:
    write_csv(tmp_path / "mc.csv", rows)
    cfg = {"data": {"train": "mc.csv", "test": "mc.csv"}, "target": "best", "choices_field": "wrong",
           "choices_sep": ";", "choices_add_target": True, "template": "Q: {q}\n{choices}\nAnswer:", **cfg}
    return Task(TaskConfig(**cfg), tmp_path, seed=seed, where="exp.yaml")


def test_each_example_has_its_own_choices_with_the_target_added(tmp_path):
    exs = task(tmp_path).examples("test")
    assert [len(ex.choices) for ex in exs] == [4, 3, 6, 4]  # K varies per example
    for ex, row in zip(exs, ROWS):
        wrong = [w.strip() for w in row["wrong"].split(";")]
        assert ex.target == row["best"] and ex.target in ex.choices
        assert [c for c in ex.choices if c != ex.target] == wrong  # order of the rest kept, trimmed


def test_the_targets_place_is_seeded_per_example(tmp_path):
    def places(seed):
        return [ex.choices.index(ex.target) for ex in task(tmp_path, seed=seed).examples("test")]

    assert places(0) == places(0)  # the same every run
    # Across seeds (and examples) the target moves: it is not always first or always last.
    seen = {p for s in range(8) for p in places(s)}
    assert len(seen) >= 3


def test_list_column_and_duplicates(tmp_path):
    rows = [{"q": "2+2?", "a": "4", "opts": ["3", "4", "5", "3"]}, {"q": "1+1?", "a": "2", "opts": ["2", "11"]}]
    write_jsonl(tmp_path / "l.jsonl", rows)
    t = Task(TaskConfig(data={"train": "l.jsonl", "test": "l.jsonl"}, target="a", choices_field="opts",
                        template="{q}"), tmp_path, where="exp.yaml")
    exs = t.examples("test")
    assert exs[0].choices == ("3", "4", "5") and exs[1].choices == ("2", "11")


def test_letter_format_gives_the_gold_letter(tmp_path):
    text = task(tmp_path).examples("test")
    letter = task(tmp_path, answer_format="letter").examples("test")
    for t, l in zip(text, letter):
        assert l.choices == tuple("ABCDEFGHIJ"[:len(t.choices)])
        assert l.target == "ABCDEFGHIJ"[t.choices.index(t.target)]
    # The prompt still shows the texts, lettered; the shot's answer turn is its letter.
    tl = task(tmp_path, answer_format="letter")
    ex, shot = tl.examples("test")[1], tl.examples("train")[0]
    msgs = tl.render(ex, [shot])
    choices = text[1].choices
    assert msgs[-1].content == f"Q: {ROWS[1]['q']}\n" + "\n".join(
        f"{'ABC'[i]}. {c}" for i, c in enumerate(choices)) + "\nAnswer:"
    assert msgs[0].content.startswith(f"Q: {ROWS[0]['q']}\nA. ") and msgs[1].content == shot.target


def test_letter_format_with_task_level_choices(tmp_path):
    write_jsonl(tmp_path / "s.jsonl", [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}])
    t = Task(TaskConfig(data={"train": "s.jsonl", "test": "s.jsonl"}, target="label", choices=["neg", "pos"],
                        answer_format="letter", template="{text}\n{choices}"), tmp_path)
    exs = t.examples("test")
    assert [ex.target for ex in exs] == ["B", "A"] and t.choices == ("A", "B")
    assert t.render(exs[0])[-1].content == "good\nA. neg\nB. pos"


JINJA = ("Q: {{ q }}\n{% for c in choices %}{{ 'ABCDEFGHIJ'[loop.index0] }}. {{ c }}"
         "{% if not loop.last %}\n{% endif %}{% endfor %}\nAnswer:")


def test_jinja_and_field_templates_render_the_same_prompt(tmp_path):
    plain = task(tmp_path, instruction="Answer with a letter.")
    jinja = task(tmp_path, template=JINJA, instruction="Answer with a letter.")
    for a, b in zip(plain.examples("test"), jinja.examples("test")):
        assert plain.render(a) == jinja.render(b)
        assert "{" not in jinja.render(b)[-1].content and a.fields["q"] in jinja.render(b)[-1].content
    # Without choices too: a column, and text that is not a placeholder.
    write_jsonl(tmp_path / "s.jsonl", [{"text": "good {x}", "label": "pos"}])
    cfgs = [{"template": "Review: {text}"}, {"template": "Review: {{ text }}"}]
    out = [Task(TaskConfig(data={"train": "s.jsonl", "test": "s.jsonl"}, target="label", **c), tmp_path)
           for c in cfgs]
    assert out[0].render(out[0].examples("test")[0]) == out[1].render(out[1].examples("test")[0])


def test_jinja_instruction_is_filled_per_example(tmp_path):
    t = task(tmp_path, instruction="{{ choices | length }} options. Literal {braces} stay.")
    exs = t.examples("test")
    assert [t.render(ex)[0].content for ex in exs] == [f"{len(ex.choices)} options. Literal {{braces}} stay."
                                                       for ex in exs]


def test_jinja_template_errors(tmp_path):
    with pytest.raises(ValidationError, match=r"malformed Jinja template \(line 1 of the template"):
        TaskConfig(template="Q: {{ q }")
    with pytest.raises(DataError) as info:  # a field no column holds: before anything is written
        task(tmp_path, template="{{ question }}").examples("test")
    msg = info.value.render()
    assert "names column 'question'" in msg and "task.template" in msg and "exp.yaml" in msg
    with pytest.raises(DataError) as info:  # fails on a row in a way the field list cannot show
        task(tmp_path, template="{{ q.title }} {{ best + 1 }}").examples("test")
    msg = info.value.render()
    assert "row 1 of the 'train' data" in msg and "task.template" in msg and "Fix:" in msg
    with pytest.raises(DataError, match="task.instruction"):
        task(tmp_path, instruction="{{ subject }}").examples("test")


def test_the_sandbox_keeps_templates_away_from_python(tmp_path):
    with pytest.raises(DataError, match="template fails"):
        task(tmp_path, template="{{ q.__class__.__mro__ }}").examples("test")


@pytest.mark.parametrize("cfg,needle,field", [
    ({"choices_field": "options"}, "names column 'options'", "task.choices_field"),
    ({"choices_add_target": False}, "target 'Paris' (row 1 of the 'train' data) is not one of its choices",
     "task.choices_field"),
    ({"choices_sep": None}, "holds text in choices column 'wrong'", "task.choices_sep"),
])
def test_bad_choices_name_row_and_fix(tmp_path, cfg, needle, field):
    with pytest.raises(DataError) as info:
        task(tmp_path, **cfg).examples("test")
    msg = info.value.render()
    assert needle in msg and f"field '{field}'" in msg and "exp.yaml" in msg and "Fix:" in msg


def test_empty_choices_and_too_many_letters(tmp_path):
    rows = [{"q": "a?", "best": "x", "wrong": "x;z"}, {"q": "b?", "best": "x", "wrong": "z;x"},
            {"q": "c?", "best": "y", "wrong": " ; "}]
    for add in (False, True):
        with pytest.raises(DataError, match=r"row 3 of the 'train' data has an empty choices list"):
            task(tmp_path, rows=rows, choices_add_target=add).examples("test")
    rows[2]["wrong"] = "y;y"
    with pytest.raises(DataError, match="row 3 of the 'train' data has only one choice"):
        task(tmp_path, rows=rows).examples("test")
    many = [{"q": "pick", "best": "c0", "wrong": ";".join(f"c{i}" for i in range(1, 30))}]
    assert len(task(tmp_path, rows=many).examples("test")[0].choices) == 30  # text: fine
    with pytest.raises(DataError, match="has 30 choices, more than the 26 letters"):
        task(tmp_path, rows=many, answer_format="letter").examples("test")


@pytest.mark.parametrize("cfg,needle", [
    ({"choices": ["a", "b"], "choices_field": "x"}, "not both"),
    ({"choices_sep": ";"}, "name the column of per-example choices"),
    ({"answer_format": "letter"}, "needs answer choices"),
    ({"choices": [str(i) for i in range(27)], "answer_format": "letter"}, "only 26"),
])
def test_choice_keys_that_cannot_go_together(cfg, needle):
    with pytest.raises(ValidationError, match=needle):
        TaskConfig(**cfg)


# -- task.custom factories --------------------------------------------------------------------------

def _module(tmp_path, monkeypatch, **fns):
    mod = types.ModuleType("h7_factories")
    for name, fn in fns.items():
        setattr(mod, name, fn)
    monkeypatch.setitem(sys.modules, "h7_factories", mod)


def test_custom_factories_get_folder_and_seed(tmp_path, monkeypatch):
    calls = {}

    def old(config):
        calls["old"] = config
        return "task-old"

    def new(config, base_dir, seed):
        calls["new"] = (base_dir, seed)
        return "task-new"

    def by_name(cfg, *, seed):
        calls["by_name"] = seed
        return "task-kw"

    def bare():
        return "task-bare"

    _module(tmp_path, monkeypatch, old=old, new=new, by_name=by_name, bare=bare)
    for fn, want in [("old", "task-old"), ("new", "task-new"), ("by_name", "task-kw"), ("bare", "task-bare")]:
        assert load_task(TaskConfig(custom=f"h7_factories:{fn}"), tmp_path, 7, "exp.yaml") == want
    assert calls["new"] == (tmp_path, 7) and calls["by_name"] == 7 and isinstance(calls["old"], TaskConfig)


def test_custom_factory_rows_with_derived_fields(tmp_path, monkeypatch):
    def make(config, base_dir, seed):
        rows = list(csv.DictReader((base_dir / "mc.csv").open(encoding="utf-8")))
        # A field the data does not have: derived here, named by the YAML's template.
        return [{**r, "shout": r["q"].upper(), "wrong": r["wrong"].split(";")} for r in rows]

    _module(tmp_path, monkeypatch, make=make)
    write_csv(tmp_path / "mc.csv", ROWS)
    cfg = TaskConfig(custom="h7_factories:make", target="best", choices_field="wrong", choices_add_target=True,
                     template="{shout}\n{choices}", test_size=0.5)
    t = load_task(cfg, tmp_path, 0, "exp.yaml")
    exs = t.examples("test") + t.examples("train")
    assert len(exs) == 4
    ex = next(e for e in exs if e.target == "Eight")
    assert t.render(ex)[-1].content.startswith("LEGS OF A SPIDER?\nA. ") and len(ex.choices) == 3
