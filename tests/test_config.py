"""Config errors name the file, line, dotted key and a fix; overrides; resolved config."""

from __future__ import annotations

import pytest

from ladder.config import apply_override, load_experiment
from ladder.errors import ConfigError

BASE = """\
name: demo
task:
  data: data.jsonl
  target: label
  template: "Q: {text}"
stages:
  - type: zero_shot
"""


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path, text, *sets) -> str:
    with pytest.raises(ConfigError) as info:
        load_experiment(write(tmp_path, text), list(sets))
    return info.value.render()


def test_valid_config_fills_defaults(tmp_path):
    exp = load_experiment(write(tmp_path, BASE))
    assert exp.config.subsample.n == 300
    assert exp.model.name == "ladder-tiny"
    assert exp.metric.type == "exact_match"
    assert [s.name for s in exp.stages] == ["zero_shot"]
    resolved = exp.resolved()
    assert resolved["generation"]["max_tokens"] == 32 and resolved["stages"][0]["type"] == "zero_shot"


def test_unknown_key_names_path_line_and_allowed_keys(tmp_path):
    msg = error_of(tmp_path, BASE.replace("  target: label", "  target: label\n  tempalte: x"))
    assert "exp.yaml:5" in msg and "task.tempalte" in msg and "unknown key" in msg
    assert "template" in msg  # the allowed keys are listed


def test_wrong_type_names_the_field(tmp_path):
    msg = error_of(tmp_path, BASE + "generation:\n  max_tokens: lots\n")
    assert "generation.max_tokens" in msg and "exp.yaml:9" in msg and "lots" in msg


def test_unknown_stage_type_lists_known_ones(tmp_path):
    msg = error_of(tmp_path, BASE.replace("zero_shot", "zero_shoot"))
    assert "stages.0.type" in msg and "unknown stage type 'zero_shoot'" in msg
    assert "few_shot" in msg and "exp.yaml:7" in msg


def test_unknown_stage_option(tmp_path):
    msg = error_of(tmp_path, BASE + "  - type: few_shot\n    kk: 3\n")
    assert "stages.1.kk" in msg and "unknown key" in msg and "exp.yaml:9" in msg


def test_unknown_metric(tmp_path):
    msg = error_of(tmp_path, BASE + "metric: accuracyy\n")
    assert "metric.type" in msg and "exact_match" in msg


def test_malformed_yaml_gives_line(tmp_path):
    msg = error_of(tmp_path, "name: x\ntask: [unclosed\nstages: []\n")
    assert "malformed YAML" in msg and "exp.yaml:" in msg


def test_not_a_mapping(tmp_path):
    assert "mapping" in error_of(tmp_path, "- just\n- a list\n")


def test_missing_file():
    with pytest.raises(ConfigError, match="file not found"):
        load_experiment("/nonexistent/exp.yaml")


def test_bad_encoding(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_experiment(path)


def test_few_shot_needs_k_or_examples(tmp_path):
    msg = error_of(tmp_path, BASE + "  - type: few_shot\n")
    assert "exactly one of `k`" in msg and "stages.1" in msg


def test_duplicate_stage_names(tmp_path):
    msg = error_of(tmp_path, BASE + "  - type: zero_shot\n")
    assert "used twice" in msg


def test_bad_template(tmp_path):
    msg = error_of(tmp_path, BASE.replace('"Q: {text}"', '"Q: {text"'))
    assert "task.template" in msg and "malformed template" in msg


def test_zero_samples_rejected(tmp_path):
    msg = error_of(tmp_path, BASE + "generation:\n  n: 0\n")
    assert "generation.n" in msg


def test_set_overrides(tmp_path):
    exp = load_experiment(write(tmp_path, BASE + "  - type: few_shot\n    k: 2\n"),
                          ["subsample.n=500", "stages.1.k=8", 'generation.stop=["\\n"]', "model.batch_size=4"])
    assert exp.config.subsample.n == 500 and exp.stages[1].k == 8
    assert exp.config.generation.stop == ["\n"] and exp.model.batch_size == 4


def test_set_errors(tmp_path):
    assert "KEY=VALUE" in error_of(tmp_path, BASE, "subsample.n")
    assert "not an index" in error_of(tmp_path, BASE, "stages.5.k=1")
    assert "subsample.nn" in error_of(tmp_path, BASE, "subsample.nn=3")


def test_override_in_place():
    raw = {"a": {"b": 1}, "l": [{"x": 1}]}
    apply_override(raw, "a.c=[1, 2]")
    apply_override(raw, "l.0.x=hello")
    assert raw == {"a": {"b": 1, "c": [1, 2]}, "l": [{"x": "hello"}]}


def test_stage_overrides_merge(tmp_path):
    exp = load_experiment(write(tmp_path, BASE + "  - type: few_shot\n    name: fs\n    k: 2\n"
                                "    generation: {temperature: 0.7}\n    model: {batch_size: 3}\n"))
    fs = exp.stages[1]
    assert exp.stage_generation(fs).temperature == 0.7 and exp.stage_generation(fs).seed == 0
    assert exp.stage_model(fs).batch_size == 3 and exp.stage_model(fs).name == "ladder-tiny"
