"""`ladder init --yes` on each data shape the project ships or reads — SST-2's TSV folder, the
lettered multiple choice of data/facts, the preference pairs of data/judged — writes a YAML that
`ladder check` passes and `ladder run` finishes."""

from __future__ import annotations

import json

import yaml

from tests.conftest import REPO
from tests.test_cli import ladder


def _init(data, tmp_path):
    out = tmp_path / "exp.yaml"
    r = ladder("init", data, "--out", out, "--yes", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    return r, out


def _check_and_run(out, tmp_path, *sets: str, env=None):
    checked = ladder("check", out, cwd=tmp_path, env=env)
    assert checked.returncode == 0 and "config and data OK" in checked.stdout, checked.stdout + checked.stderr
    ran = ladder("run", out, *(a for s in sets for a in ("--set", s)), cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return (tmp_path / "results" / "exp" / "summary.csv").read_text()


def test_an_sst2_tsv_folder_becomes_a_two_way_task_with_guessed_words(tmp_path):
    # The shape of ../shared/data/sst2 (GLUE's files: train.tsv and dev.tsv, `text<TAB>label`, 1 =
    # positive), written here so the test runs where the shared data is absent.
    folder = tmp_path / "sst2"
    folder.mkdir()
    words = {0: ["dull", "tedious", "flat"], 1: ["charming", "moving", "sharp"]}
    for name, n in (("train.tsv", 60), ("dev.tsv", 24)):
        lines = [f"a {words[i % 2][i % 3]} film , all told {i} \t{i % 2}" for i in range(n)]
        (folder / name).write_text("text\tlabel\n" + "\n".join(lines) + "\n", encoding="utf-8")
    r, out = _init(folder, tmp_path)
    assert "0 → negative, 1 → positive" in r.stdout
    task = yaml.safe_load(out.read_text())["task"]
    assert task["data"] == {"train": "sst2/train.tsv", "test": "sst2/dev.tsv"}
    assert task["target"] == "label" and task["template"] == "{text}" and task["choices"] == ["negative", "positive"]
    summary = _check_and_run(out, tmp_path, "subsample.n=8", "stages.1.k=2")
    assert "zero_shot" in summary and "few_shot" in summary


def test_per_row_options_become_a_lettered_multiple_choice_task(tmp_path):
    # data/facts: a question, its best answer and its wrong answers as "Lyon;Marseille;Nice". Before,
    # init took the best answer as free text (exact_match): every example scored 0.
    r, out = _init(REPO / "data" / "facts" / "facts.csv", tmp_path)
    assert "multiple choice, each row's options from 'incorrect_answers'" in r.stdout
    cfg = yaml.safe_load(out.read_text())
    task = cfg["task"]
    assert (task["target"], task["choices_field"], task["choices_sep"]) == ("best_answer", "incorrect_answers", ";")
    assert task["choices_add_target"] is True and task["answer_format"] == "letter"
    assert task["template"] == "Question: {question}\n{choices}\nAnswer:" and cfg["metric"] == "choice"
    # Outside the project the data path is absolute, not ../../../.. up to the root.
    assert task["data"] == str(REPO / "data" / "facts" / "facts.csv")
    from ladder.config import load_experiment
    from ladder.tasks import load_task

    exp = load_experiment(out)
    examples = load_task(exp.config.task, exp.base_dir, exp.config.seed, "exp.yaml").examples("test")
    assert all(ex.target in ex.choices and ex.choices[0] == "A" for ex in examples)  # letters
    summary = _check_and_run(out, tmp_path, "stages.1.k=2")
    assert "zero_shot" in summary and "few_shot" in summary


def test_preference_pairs_become_an_open_ended_judged_task(tmp_path):
    # data/judged/pairs.jsonl: {prompt, chosen, rejected}. Before, init took `rejected` (two
    # distinct values) as the gold answer of a 2-way task.
    r, out = _init(REPO / "data" / "judged" / "pairs.jsonl", tmp_path)
    assert "preference pairs, not gold answers" in r.stdout and "no target (open-ended, judged" in r.stdout
    text = out.read_text()
    cfg = yaml.safe_load(text)
    assert cfg["task"]["target"] is None and cfg["task"]["template"] == "{prompt}"
    assert cfg["metric"]["type"] == "judge" and [s["type"] for s in cfg["stages"]] == ["zero_shot"]
    assert "# - type: reward_model" in text  # the pairs' own use, offered
    # No key: check still plans it (and says so); the judge pointed at a server, it runs as written.
    nokey = ladder("check", out, "--offline", cwd=tmp_path, env={"OPENAI_API_KEY": ""})
    assert nokey.returncode == 0 and "warn missing_key: OPENAI_API_KEY is not set" in nokey.stdout, nokey.stderr
    summary, judged = _run_judged(out, cfg, tmp_path, "subsample.n=6")
    assert "zero_shot" in summary and judged == 6


def _run_judged(out, cfg, tmp_path, *sets):
    """Check and run an open-ended YAML with its judge pointed at the fake server (which says Yes)."""
    from ladder.testing.fake_api import FakeAPIServer
    from tests.backends.api_support import KEY, KEY_ENV

    with FakeAPIServer(responder=lambda req, i: "Yes") as srv:
        cfg["metric"]["model"].update(base_url=srv.base_url, api_key_env=KEY_ENV)
        out.write_text(yaml.safe_dump(cfg, sort_keys=False))
        summary = _check_and_run(out, tmp_path, *sets, "generation.max_tokens=4", env={KEY_ENV: KEY})
        return summary, len(srv.requests())


def test_chat_rows_best_of_n_exports_become_an_open_ended_task_on_their_user_turns(tmp_path):
    # best_of_n's sft.jsonl (and OpenAI's fine-tuning files) hold messages, not columns. Before, init
    # took `completion` as the target and stopped: "the data has only its target column".
    rows = [{"prompt": [{"role": "system", "content": "Reply with one word."},
                        {"role": "user", "content": f"Review: parcel {i} came late"}],
             "completion": [{"role": "assistant", "content": "sorry"}]} for i in range(30)]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r, out = _init(data, tmp_path)
    assert "'prompt' holds chat messages" in r.stdout
    text = out.read_text()
    cfg = yaml.safe_load(text)
    assert cfg["task"]["target"] is None and cfg["task"]["instruction"] == "Reply with one word."
    assert "#   data: sft.jsonl" in text  # the rows train an sft stage as they are
    from ladder.config import load_experiment
    from ladder.tasks import load_task

    exp = load_experiment(out)
    task = load_task(exp.config.task, exp.base_dir, exp.config.seed, "exp.yaml")
    assert all(task.render(ex)[-1].content.startswith("Review: parcel") for ex in task.examples("test"))
    summary, judged = _run_judged(out, cfg, tmp_path)
    assert "zero_shot" in summary and judged == 6  # the 20% test split of 30 rows


def test_a_data_path_is_relative_within_a_project_and_absolute_across_projects(tmp_path):
    # Whatever the checkout's own place: the YAML in configs/ beside data/ reads ../data/...; a YAML
    # three folders away from data that only shares /tmp (a test's tmp dir, a clone in /tmp) does not
    # get ../../../clone/data/..., which breaks as soon as either moves.
    from ladder.init import _as_yaml_data

    data = tmp_path / "clone" / "data" / "facts.csv"
    assert _as_yaml_data(data, tmp_path / "clone" / "configs") == "../data/facts.csv"
    assert _as_yaml_data(data, tmp_path / "clone") == "data/facts.csv"
    far = tmp_path / "pytest-of-x" / "pytest-1" / "test0"
    assert _as_yaml_data(data, far) == str(data.resolve())
    assert _as_yaml_data({"test": data}, far) == {"test": str(data.resolve())}
