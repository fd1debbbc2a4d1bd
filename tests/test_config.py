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
    path.write_text(BASE, encoding="utf-16")
    with pytest.raises(ConfigError, match="UTF-16 text, not UTF-8.*iconv -f UTF-16 -t UTF-8 'exp.yaml'"):
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


# -- names, strict types and the prose of errors (issue 12, items 10 and 11) ---------------------


@pytest.mark.parametrize("name", ["../../../x", "/tmp/elsewhere", "..", ".", "a/b", ".hidden", "-rf"])
def test_stage_names_stay_inside_the_results_folder(tmp_path, name):
    msg = error_of(tmp_path, BASE + f'    name: "{name}"\n')
    assert "field 'stages.0.name'" in msg and "not a plain folder name" in msg and "exp.yaml:8" in msg
    assert "Fix: use a plain name" in msg


def test_plain_stage_and_experiment_names_pass(tmp_path):
    exp = load_experiment(write(tmp_path, BASE.replace("name: demo", "name: demo-2.b") + "    name: few_shot.k-4\n"))
    assert exp.stages[0].name == "few_shot.k-4" and exp.config.name == "demo-2.b"
    assert "not a plain folder name" in error_of(tmp_path, BASE.replace("name: demo", "name: ../demo"))


@pytest.mark.parametrize("line,needle", [
    ("generation: {max_tokens: yes}", "'generation.max_tokens': YAML read yes as the boolean true, not a whole number"),
    ("generation: {temperature: on}", "'generation.temperature': YAML read on as the boolean true, not a number"),
    ("generation: {max_tokens: 4.5}", "'generation.max_tokens': Input should be a valid integer (got 4.5)"),
    ("generation: {max_tokens: 4.0}", "'generation.max_tokens': Input should be a valid integer (got 4.0)"),
    ("generation: {top_p: '0.5'}", "Fix: write the number without quotes (top_p: 0.5)"),
    ("subsample: {n: true}", "'subsample.n': YAML read true as the boolean true, not a whole number"),
    ("task: {data: d.jsonl, target: yes}", "'task.target': YAML read yes as the boolean true, not text. "
                                           "Fix: quote it: target: \"yes\""),
])
def test_types_are_strict_and_yaml_booleans_are_named(tmp_path, line, needle):
    text = BASE.replace("task:\n  data: data.jsonl\n  target: label\n  template: \"Q: {text}\"\n", "") \
        if line.startswith("task:") else BASE
    msg = error_of(tmp_path, text + line + "\n")
    assert needle in msg


def test_floats_keep_yaml_exponents_and_whole_numbers(tmp_path):
    exp = load_experiment(write(tmp_path, BASE + "generation: {temperature: 1, top_p: 9e-1}\n"),
                          ["generation.seed=7", "stages.0.generation={temperature: 5e-1}"])
    assert exp.config.generation.temperature == 1.0 and exp.config.generation.top_p == 0.9
    assert exp.stage_generation(exp.stages[0]).temperature == 0.5
    exp = load_experiment(write(tmp_path, BASE + "  - {type: sft, name: train, learning_rate: 1e-5}\n"))
    assert exp.stages[1].learning_rate == 1e-5


def test_choices_read_as_booleans_say_so(tmp_path):
    msg = error_of(tmp_path, BASE.replace("  target: label\n", "  target: label\n  choices: [yes, no, maybe]\n"))
    assert "field 'task.choices': YAML read yes, no as booleans (true, false), not text" in msg
    assert 'Fix: quote them: choices: ["yes", "no", "maybe"]' in msg and "give a list" not in msg
    msg = error_of(tmp_path, BASE, "task.choices=[on, off]")
    assert "(--set task.choices=[on, off])" in msg and "YAML read true, false as booleans" in msg


def test_target_map_takes_number_and_boolean_keys(tmp_path):
    exp = load_experiment(write(tmp_path, BASE.replace("  target: label\n",
                                                       "  target: label\n  target_map: {0: negative, 1: positive}\n")))
    assert exp.config.task.target_map == {"0": "negative", "1": "positive"}
    exp = load_experiment(write(tmp_path, BASE.replace("  target: label\n",
                                                       "  target: label\n  target_map: {true: yes_, false: no_}\n")))
    assert exp.config.task.target_map == {"true": "yes_", "false": "no_"}


def test_fixes_quote_whole_sentences_of_docstrings(tmp_path):
    from ladder.config import first_sentence

    assert first_sentence("Maps values, e.g. {0: a. b, 1: c}. More.") == "Maps values, e.g. {0: a. b, 1: c}."
    assert first_sentence('Say why (e.g. "none yet."); it is kept. Next.') == 'Say why (e.g. "none yet."); it is kept.'
    assert first_sentence("Use i.e. this one. Then.") == "Use i.e. this one."
    assert first_sentence("One sentence only") == "One sentence only"
    msg = error_of(tmp_path, BASE.replace("  target: label\n", "  target: label\n  target_map: [0, 1]\n"))
    assert "(target_map: maps raw target values to answer text, e.g. {0: negative, 1: positive})." in msg


KEY = "sk-proj-Zq8v3LmN0pRt5XyW2aBc7DeF9gHi"


@pytest.mark.parametrize("key", [KEY, "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "hf_AbCdEfGhIjKlMnOpQrStUv",
                                 "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", "a1b2c3d4e5f6a7b8c9d0e1f2a3b4"])
def test_an_api_key_in_api_key_env_is_never_printed(tmp_path, key):
    model = "model: {backend: openai, name: gpt-4o-mini, api_key_env: %s}\n"
    for msg in (error_of(tmp_path, BASE + model % key),
                error_of(tmp_path, BASE + model % "OPENAI_API_KEY", f"model.api_key_env={key}")):
        assert "field 'model.api_key_env': looks like an API key, not the name of an environment variable" in msg
        assert key not in msg and key[:12] not in msg
        assert "write api_key_env: OPENAI_API_KEY" in msg


def test_api_key_env_takes_variable_names(tmp_path):
    for name in ("OPENAI_API_KEY", "MY_LAB_KEY_2", "together_api_key", "HF_TOKEN", "hf_token", "SK_KEY",
                 "KEY_FOR_THE_OPENAI_SERVER_2024", "my_openai_key_for_2024_runs"):
        exp = load_experiment(write(tmp_path, BASE + f"model: {{backend: openai, name: m, api_key_env: {name}}}\n"))
        assert exp.model.api_key_env == name
    msg = error_of(tmp_path, BASE + "model: {backend: anthropic, name: m, api_key_env: 'my key'}\n")
    assert "is not the name of an environment variable" in msg and "my key" not in msg
    assert "ANTHROPIC_API_KEY" in msg


def test_stage_model_overrides_are_checked_with_the_config(tmp_path):
    msg = error_of(tmp_path, BASE + "    model: {batch_size: yes, max_new_tokens: 3}\n")
    assert "exp.yaml:8: field 'stages.0.model.batch_size': YAML read yes as the boolean true" in msg
    assert "field 'stages.0.model.max_new_tokens': unknown key" in msg
    msg = error_of(tmp_path, BASE + "    model: {backend: openai, name: m, api_key_env: %s}\n" % KEY)
    assert "field 'stages.0.model.api_key_env': looks like an API key" in msg and KEY not in msg
    exp = load_experiment(write(tmp_path, BASE + "    model: {batch_size: 4}\n"))
    assert exp.stage_model(exp.stages[0]).batch_size == 4


def test_problems_in_every_section_are_reported_together(tmp_path):
    """validate() checks each section (metrics, model, stages, what they name of each other) and
    raises their problems as one error: a user fixes them all in one pass."""
    said = error_of(tmp_path, BASE.replace("stages:\n  - type: zero_shot\n", """\
metric: {type: exact_match, no_such_option: 1}
model: {backend: hf, name: m, temprature: 0.5}
stages:
  - type: zero_shot
  - type: zero_shot
  - type: sft
    model: {from_stage: nowhere}
"""))
    for part in ("no_such_option", "temprature", "used twice", "nowhere"):
        assert part in said, part
