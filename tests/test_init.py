"""`ladder init DATA`: a first experiment YAML from each data shape the project ships or makes."""

from __future__ import annotations

import json

import yaml

from ladder.config import load_experiment
from ladder.init import run_init
from tests.conftest import REPO
from tests.test_cli import ladder


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_folder_of_train_and_test_files_becomes_a_choice_task_that_checks_and_runs(tmp_path):
    out = tmp_path / "exp.yaml"
    r = ladder("init", REPO / "data/sentiment", "--out", out, "--yes", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"ladder check {out}" in r.stdout and f"ladder run {out}" in r.stdout
    cfg = yaml.safe_load(out.read_text())
    assert cfg["task"]["target"] == "label" and cfg["task"]["template"] == "{text}"
    assert cfg["task"]["choices"] == ["negative", "neutral", "positive"] and cfg["metric"] == "choice"
    assert [s["type"] for s in cfg["stages"]] == ["zero_shot", "few_shot"]
    assert all("#" in line for line in out.read_text().splitlines()[1:] if line.strip() and not line.startswith("task:")
               and not line.startswith("stages:") and "data:" not in line and "instruction:" not in line)
    exp = load_experiment(out)
    assert exp.config.task.choices == ["negative", "neutral", "positive"]
    assert ladder("check", out, cwd=tmp_path).returncode == 0
    run = ladder("run", out, "--set", "subsample.n=12", "--set", "stages.1.k=2", cwd=tmp_path)
    assert run.returncode == 0, run.stderr + run.stdout
    summary = (tmp_path / "results/exp/summary.csv").read_text()
    assert "zero_shot" in summary and "few_shot" in summary


def test_class_ids_get_guessed_words_said_on_the_terminal_and_in_the_yaml(tmp_path):
    rows = [{"review": f"the film was {'good' if i % 2 else 'bad'} {i}", "label": i % 2} for i in range(40)]
    data = _write_jsonl(tmp_path / "reviews.jsonl", rows)
    r = ladder("init", data, "--out", tmp_path / "exp.yaml", "--yes", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "guessed words for the class ids of 'label': 0 → negative, 1 → positive" in r.stdout
    text = (tmp_path / "exp.yaml").read_text()
    assert "GUESSED" in text
    task = yaml.safe_load(text)["task"]
    assert task["target_map"] == {"0": "negative", "1": "positive"} and task["choices"] == ["negative", "positive"]
    assert task["template"] == "{review}" and task["data"] == "reviews.jsonl"
    from ladder.tasks import load_task

    exp = load_experiment(tmp_path / "exp.yaml")
    task = load_task(exp.config.task, exp.base_dir, exp.config.seed, "exp.yaml")
    assert {ex.target for ex in task.examples("test")} == {"negative", "positive"}
    # --labels names them instead of guessing.
    r = ladder("init", data, "--out", tmp_path / "b.yaml", "--yes", "--labels", "0=bad,1=good", cwd=tmp_path)
    assert r.returncode == 0 and "note:" not in r.stdout
    assert yaml.safe_load((tmp_path / "b.yaml").read_text())["task"]["choices"] == ["bad", "good"]


def test_gsm8k_style_answers_become_a_numeric_task(tmp_path):
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"{i} + {i} = {2 * i}\n#### {2 * i}"} for i in range(30)]
    data = _write_jsonl(tmp_path / "math.jsonl", rows)
    r = ladder("init", data, "--out", tmp_path / "exp.yaml", "--yes", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((tmp_path / "exp.yaml").read_text())
    assert cfg["metric"] == {"type": "numeric", "extract": "gsm8k"} and cfg["task"]["target"] == "answer"
    assert cfg["task"]["template"] == "{question}" and "####" in cfg["task"]["instruction"]
    assert ladder("check", tmp_path / "exp.yaml", cwd=tmp_path).returncode == 0


def test_an_existing_file_is_never_overwritten_without_force(tmp_path):
    out = tmp_path / "exp.yaml"
    out.write_text("mine\n")
    r = ladder("init", REPO / "data/sentiment", "--out", out, "--yes", cwd=tmp_path)
    assert r.returncode == 2 and "already exists" in r.stdout + r.stderr and "--force" in r.stdout + r.stderr
    assert out.read_text() == "mine\n"
    assert ladder("init", REPO / "data/sentiment", "--out", out, "--yes", "--force", cwd=tmp_path).returncode == 0
    assert out.read_text() != "mine\n"


def test_bad_input_is_one_paragraph_and_writes_nothing(tmp_path):
    data = _write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "label": i % 3} for i in range(20)])
    for args, needle in [(["--target", "gold"], "names column 'gold'"),
                         (["--labels", "0=a,1=b"], "no word for the value(s) 2"),
                         (["--field", "label"], "--field names column 'label'")]:
        r = ladder("init", data, "--out", tmp_path / "x.yaml", "--yes", *args, cwd=tmp_path)
        assert r.returncode == 2 and needle in r.stdout + r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert not (tmp_path / "x.yaml").exists()
    r = ladder("init", tmp_path / "nope.csv", "--out", tmp_path / "x.yaml", "--yes", cwd=tmp_path)
    assert r.returncode == 2 and "does not exist" in r.stdout + r.stderr
    (tmp_path / "empty").mkdir()
    r = ladder("init", tmp_path / "empty", "--out", tmp_path / "x.yaml", "--yes", cwd=tmp_path)
    assert r.returncode == 2 and "no data files in" in r.stdout + r.stderr


def test_on_a_terminal_each_guess_is_asked_and_the_answers_are_written(tmp_path):
    data = _write_jsonl(tmp_path / "d.jsonl", [{"text": f"t{i}", "note": f"n{i}", "label": i % 2} for i in range(20)])
    asked = []

    def ask(question, default):
        asked.append((question.split(" (")[0], default))
        return {"words for the class ids": "0=no,1=yes", "instruction": "Is it so? Answer yes or no."}.get(
            question.split(" (")[0], default)

    run_init(str(data), tmp_path / "exp.yaml", cwd=tmp_path, ask=ask, say=lambda _: None)
    assert [q for q, _ in asked] == ["target column", "words for the class ids", "column the model is shown",
                                     "instruction"]
    task = yaml.safe_load((tmp_path / "exp.yaml").read_text())["task"]
    assert task["target_map"] == {"0": "no", "1": "yes"} and task["instruction"] == "Is it so? Answer yes or no."
    assert "GUESSED" not in (tmp_path / "exp.yaml").read_text()  # a person named them


def test_a_prompts_only_file_becomes_an_open_ended_task_scored_by_a_judge(tmp_path, monkeypatch):
    from ladder.testing.fake_api import FakeAPIServer
    from tests.backends.api_support import KEY, KEY_ENV

    data = _write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Write note {i}."} for i in range(20)])
    r = ladder("init", data, "--out", tmp_path / "exp.yaml", "--yes", "--judge", "openai:judge-model", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "no column looks like a gold answer" in r.stdout and "no target (open-ended, judged" in r.stdout
    cfg = yaml.safe_load((tmp_path / "exp.yaml").read_text())
    assert cfg["task"]["target"] is None and cfg["task"]["template"] == "{prompt}"
    assert cfg["metric"]["type"] == "judge" and cfg["metric"]["model"] == {"backend": "openai", "name": "judge-model"}
    assert [s["type"] for s in cfg["stages"]] == ["zero_shot"]  # no gold shots to show
    # Pointed at a judge server, it runs as written: the value is the share of Yes verdicts.
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeAPIServer(responder=lambda req, i: "Yes" if i % 2 else "No") as srv:
        cfg["metric"]["model"].update(base_url=srv.base_url, api_key_env=KEY_ENV)
        (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        assert ladder("check", tmp_path / "exp.yaml", cwd=tmp_path, env={KEY_ENV: KEY}).returncode == 0
        run = ladder("run", tmp_path / "exp.yaml", "--set", "generation.max_tokens=4", cwd=tmp_path, env={KEY_ENV: KEY})
        assert run.returncode == 0, run.stdout + run.stderr
        judged = len(srv.requests())
    assert judged == 4  # the 20% test split of 20 prompts, one verdict each
