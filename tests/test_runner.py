"""The runner end to end on a small local model: results layout, re-runs, resume, locking."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib

import pytest
import yaml

from ladder.backends.base import Backend, BackendConfig
from ladder.cache import Cache
from ladder.config import load_experiment
from ladder.errors import LadderError
from ladder.config import StageConfig
from ladder.runner import run_experiment
from ladder.stages import Stage
from ladder.stages.zero_shot import ZeroShot
from ladder.store import ExperimentLock, JsonlWriter, read_json, read_jsonl
from tests.backends.api_support import ENV as API_ENV
from tests.backends.api_support import ServerProcess, api_experiment, outcome
from ladder.types import Guard, MetricValue, Products, Sample, StageResult
from tests.conftest import LABELS, REPO, experiment

STAGES = [{"type": "zero_shot"}, {"type": "few_shot", "k": 2}]


def summary(folder):
    with open(folder / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_results_layout_and_second_run_generates_nothing(tmp_path, random_model):
    exp = load_experiment(experiment(tmp_path, random_model, stages=STAGES))
    first = run_experiment(exp)
    folder = tmp_path / "results" / "t"
    for name in ("experiment.yaml", "manifest.json", "summary.csv", "summary.md"):
        assert (folder / name).exists()
    rows = summary(folder)
    assert [r["stage"] for r in rows] == ["zero_shot", "few_shot"]
    assert all(r["n"] == "40" and r["value"] != "" and r["ci_low"] != "" for r in rows)
    run_dir = folder / "zero_shot" / first[0].run_id
    records = read_jsonl(run_dir / "samples.jsonl")
    assert len(records) == 40 and {"prompt", "samples", "score", "target"} <= set(records[0])
    assert records[0]["samples"][0]["finish_reason"] in ("eos", "stop", "length")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["subsample"]["ids"]) == 40 and manifest["versions"]["transformers"]

    second = run_experiment(load_experiment(experiment(tmp_path, random_model, stages=STAGES)))
    assert [r.metric for r in second] == [r.metric for r in first]
    assert all(r.stats.generated_samples == first[i].stats.generated_samples for i, r in enumerate(second))
    # A lost metrics.json (crash after the last sample) resumes entirely from cache + samples.jsonl.
    (run_dir / "metrics.json").unlink()
    third = run_experiment(load_experiment(experiment(tmp_path, random_model, stages=STAGES)))
    assert third[0].metric == first[0].metric and third[0].stats.generated_samples == 0


def test_changed_config_gets_a_new_run_folder(tmp_path, random_model):
    a = run_experiment(load_experiment(experiment(tmp_path, random_model)))
    b = run_experiment(load_experiment(experiment(tmp_path, random_model), ["generation.max_tokens=5"]))
    assert a[0].run_id != b[0].run_id


def test_stages_see_the_same_examples(tmp_path, random_model):
    results = run_experiment(load_experiment(experiment(tmp_path, random_model, stages=STAGES)))
    ids = [[r["id"] for r in read_jsonl(tmp_path / "results/t" / res.stage / res.run_id / "samples.jsonl")]
           for res in results]
    assert sorted(ids[0]) == sorted(ids[1]) and len(ids[0]) == 40


def test_resume_after_sigkill_repeats_no_finished_call(tmp_path, random_model):
    path = experiment(tmp_path, random_model, n_test=240, subsample={"n": 240},
                      generation={"max_tokens": 16}, model={"backend": "hf", "name": str(random_model),
                                                           "batch_size": 4})
    env = {**os.environ, "LADDER_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "ladder.cli", "run", str(path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    db = tmp_path / "cache" / "calls.sqlite"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once some, but not all, calls are finished
        if db.exists() and len(Cache(tmp_path / "cache")) >= 60:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(Cache(tmp_path / "cache"))
    assert 60 <= finished < 240, "the kill should land mid-stage"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    line = " ".join(done.stderr.split())
    assert f"{240 - finished} generated" in line  # only what had not finished
    run_dir = next((tmp_path / "results/t/zero_shot").iterdir())
    ids = [r["id"] for r in read_jsonl(run_dir / "samples.jsonl")]
    assert len(ids) == len(set(ids)) == 240  # each example recorded exactly once
    assert summary(tmp_path / "results/t")[0]["n"] == "240"


def test_bad_data_writes_nothing(tmp_path, random_model):
    path = experiment(tmp_path, random_model)
    exp = load_experiment(path, ['task.template="Review: {body}"'])
    with pytest.raises(LadderError, match="body"):
        run_experiment(exp)
    assert not (tmp_path / "results").exists()


def test_second_process_on_the_same_experiment_is_refused(tmp_path):
    with ExperimentLock(tmp_path / "exp"):
        with pytest.raises(LadderError, match="another ladder process"):
            with ExperimentLock(tmp_path / "exp"):
                pass
    with ExperimentLock(tmp_path / "exp"):  # released again
        pass


def test_a_second_run_of_a_running_experiment_is_refused_and_changes_nothing(tmp_path):
    # A slow server keeps the first run busy while the second starts; the second asks for other
    # settings (max_tokens 5), so any file it wrote would show up as a second run folder or as its
    # settings in experiment.yaml.
    with ServerProcess(tmp_path, "--latency", "0.5") as srv:
        path = api_experiment(tmp_path, "openai", srv.base_url, model={"concurrency": 2})
        env = {**API_ENV, "LADDER_CACHE_DIR": str(tmp_path / "cache")}
        cmd = [sys.executable, "-m", "ladder.cli", "run", str(path)]
        first = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while srv.stats()["successes"] < 2 and time.time() < deadline:
            time.sleep(0.01)
        second = subprocess.run([*cmd, "--set", "generation.max_tokens=5"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        first_running = first.poll() is None
        assert second.returncode == 2, (f"the second run was not refused (first still running: "
                                        f"{first_running}):\n{second.stderr}")
        assert first_running, "the first run ended before the second started: the test proved nothing"
        srv.configure(latency=0)
        out, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        ref = api_experiment(tmp_path / "ref", "openai", srv.base_url, model={"concurrency": 2})
        alone = subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(ref)], cwd=tmp_path / "ref",
                               env={**env, "LADDER_CACHE_DIR": str(tmp_path / "ref/cache")},
                               capture_output=True, text=True, timeout=120)
        assert alone.returncode == 0, alone.stderr
    assert "Traceback" not in second.stdout + second.stderr
    assert "another ladder process is running this experiment" in " ".join(second.stderr.split())
    folder = tmp_path / "results/t"
    assert len(list((folder / "zero_shot").iterdir())) == 1  # no run folder of the second's settings
    assert yaml.safe_load((folder / "experiment.yaml").read_text())["generation"]["max_tokens"] == 4
    # Not one interleaved line: the first run's results are exactly those of a run on its own.
    assert outcome(folder, "zero_shot") == outcome(tmp_path / "ref/results/t", "zero_shot")


def test_torn_jsonl_line_is_repaired(tmp_path):
    path = tmp_path / "s.jsonl"
    with JsonlWriter(path) as w:
        w.write([{"id": "a"}, {"id": "b"}])
    with open(path, "a") as f:
        f.write('{"id": "c", "sam')  # a writer killed mid-line
    assert [r["id"] for r in read_jsonl(path, repair=True)] == ["a", "b"]
    with JsonlWriter(path) as w:
        w.write([{"id": "c"}])
    assert [r["id"] for r in read_jsonl(path)] == ["a", "b", "c"]


class ProducesModelConfig(StageConfig):
    type: str = "tests.test_runner:ProducesModel"
    path: str
    """Where the 'trained' model is."""


class ProducesModel(Stage):
    """Stands in for sft: 'produces' a model (an existing folder) for later stages."""

    Config = ProducesModelConfig
    family = "training"
    produces_model = True  # declared (Stage's default is False): later stages may name it in from_stage

    def run(self, ctx):
        result = ZeroShot(ctx.stage).run(ctx)
        result.products = Products(model={"backend": "hf", "name": self.config.path})
        return result


def test_from_stage_uses_the_model_an_earlier_stage_produced(tmp_path, random_model):
    other = tmp_path / "produced"
    shutil.copytree(random_model, other)
    stages = [{"type": "tests.test_runner:ProducesModel", "name": "train", "path": str(other)},
              {"type": "zero_shot", "name": "after", "model": {"from_stage": "train"}}]
    exp = load_experiment(experiment(tmp_path, random_model, stages=stages))
    results = run_experiment(exp)
    stage_json = json.loads((tmp_path / "results/t/after" / results[1].run_id / "stage.json").read_text())
    assert stage_json["model"]["name"] == str(other) and stage_json["model"]["from_stage"] is None
    # --only the later stage: the producer's finished result supplies the model.
    again = run_experiment(load_experiment(experiment(tmp_path, random_model, stages=stages)), only=["after"])
    assert [r.stage for r in again] == ["train", "after"] and again[1].run_id == results[1].run_id


def test_from_stage_must_name_an_earlier_stage(tmp_path, random_model):
    stages = [{"type": "zero_shot", "model": {"from_stage": "sft"}}]
    with pytest.raises(LadderError, match="'sft' is not a stage of this experiment"):
        load_experiment(experiment(tmp_path, random_model, stages=stages))
    stages.append({"type": "tests.test_runner:ProducesModel", "name": "sft", "path": "x"})
    with pytest.raises(LadderError, match="'sft' comes after this stage"):
        load_experiment(experiment(tmp_path, random_model, stages=stages))


def test_only_with_an_unknown_stage_name_is_an_error(tmp_path, random_model):
    exp = load_experiment(experiment(tmp_path, random_model, stages=STAGES))
    with pytest.raises(LadderError, match="no stage called zero_shoot") as info:
        run_experiment(exp, only=["zero_shoot"])
    assert "zero_shot, few_shot" in info.value.render()
    assert not (tmp_path / "results").exists()


class MumblerConfig(BackendConfig):
    backend: str = "tests.test_runner:Mumbler"
    name: str = "mumbler"


class Mumbler(Backend):
    """Says 'neutral', except every fourth review gets an answer that is none of the choices."""

    Config = MumblerConfig

    def sample(self, jobs, gen, on_done):
        for j, job in enumerate(jobs):
            odd = zlib.crc32(job.messages[-1].content.encode()) % 4 == 0
            on_done(j, [Sample("hmm, hard to say" if odd else "neutral", "eos", 10, 3) for _ in job.indices])


def test_k_way_rows_show_chance_majority_and_unparsed_through_the_cli(tmp_path):
    path = experiment(tmp_path, "unused", model={"backend": "tests.test_runner:Mumbler", "name": "mumbler"},
                      stages=[{"type": "zero_shot"}, {"type": "zero_shot", "name": "again"},
                              {"type": "best_of_n", "n": 2, "select": "majority"}])
    out = subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(path)], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "250"}, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = summary(tmp_path / "results/t")
    test = [json.loads(line) for line in (tmp_path / "data/test.jsonl").read_text().splitlines()]
    odd = [zlib.crc32(f"Review: {r['text']}".encode()) % 4 == 0 for r in test]
    counts = {label: sum(r["label"] == label for r in test) for label in LABELS}
    for row in rows:  # every example has the task's 3 choices
        assert float(row["chance"]) == pytest.approx(1 / 3, abs=1e-6)
        assert float(row["majority"]) == pytest.approx(max(counts.values()) / len(test), abs=1e-6)
        assert float(row["unparsed"]) == pytest.approx(sum(odd) / len(test), abs=1e-6)
        assert ("unparsed" in row["flags"]) == (sum(odd) / len(test) > 0.05)
        assert row["oracle"] == "False"
    assert sum(odd) / len(test) > 0.05  # the data makes the guard fire
    # 'neutral' wherever an answer was read: no better than the majority class, whatever its CI says.
    assert all("no_better_than_majority" in row["flags"] for row in rows)
    # The fix for unread answers fits the stage: the greedy one's max_tokens, the sampling one's temperature.
    saved = {r["stage"]: read_json(tmp_path / "results/t" / r["stage"] / r["run_id"] / "metrics.json") for r in rows}
    said = {s: next(g["message"] for g in m["guards"] if g["name"] == "unparsed") for s, m in saved.items()}
    assert "max_tokens" in said["zero_shot"] and "temperature" not in said["zero_shot"]
    assert "lower the temperature" in said["best_of_n"] and "max_tokens" not in said["best_of_n"]
    assert "chance / maj." in out.stdout and "0.333 /" in out.stdout
    # Two stages with identical outputs: said so, never a zero-width "0.000 [0.000, 0.000]" nor -0.000.
    assert "-0.000" not in out.stdout and "identical outputs" in out.stdout and "0.000 [0.000, 0.000]" not in out.stdout


class PairsStage(Stage):
    """Stands in for reward_model: its n counts something other than the test subsample."""

    evaluates_test_subsample = False

    def run(self, ctx):
        return StageResult(ctx.stage.name, ctx.stage.type, ctx.run_id, "pairwise_accuracy",
                           MetricValue(0.7, 0.62, 0.77, 155), [Guard("beats_chance", "ok", "fine", 0.7)])


def test_a_stage_not_on_the_test_subsample_does_not_inherit_its_warning(tmp_path):
    from ladder.stages.reward_model import RewardModel

    assert RewardModel.evaluates_test_subsample is False
    stages = [{"type": "tests.test_runner:PairsStage", "name": "pm"}, {"type": "zero_shot"}]
    exp = load_experiment(experiment(tmp_path, "unused", model={"backend": "tests.test_runner:Mumbler",
                                                                  "name": "mumbler"}, stages=stages))
    pm, zero = run_experiment(exp)
    assert [g.name for g in pm.guards] == ["beats_chance"]
    assert any(g.name == "subsample" and "too few" in g.message for g in zero.guards)  # n = 40
    assert "subsample" not in summary(tmp_path / "results/t")[0]["flags"]


# ---------------------------------------------------------------------------------------------
# Run ids cover contents; a damaged finished stage is noticed. The Oracle backend (test_climb)
# answers from the review's words, not from the gold labels: editing the labels changes scores
# and never what the model says, so every generation of a re-run must come from the cache.

ORACLE = {"backend": "tests.test_climb:Oracle", "name": "oracle"}


def _cli(tmp_path, path, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "LADDER_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", "ladder.cli", "run", str(path), *args], capture_output=True,
                         text=True, cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def test_editing_the_data_in_place_gives_new_run_ids_and_the_fresh_value(tmp_path):
    path = experiment(tmp_path, "unused", model=ORACLE)
    _cli(tmp_path, path)
    old = summary(tmp_path / "results/t")[0]
    test = tmp_path / "data" / "test.jsonl"
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    for row in rows[:20]:
        row["label"] = "neutral"  # what the Oracle answers without shots: 20 more right answers at most
    test.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # The repro beside it: a second, identical zero_shot stage must agree exactly.
    config = yaml.safe_load(path.read_text())
    config["stages"] = [{"type": "zero_shot"}, {"type": "zero_shot", "name": "zero_shot_again"}]
    path.write_text(yaml.safe_dump(config))
    second = _cli(tmp_path, path)
    assert "done earlier" not in second.stderr
    new, again = summary(tmp_path / "results/t")
    assert new["run_id"] != old["run_id"] and new["value"] != old["value"]
    assert again["value"] == new["value"] and float(again["diff_prev"]) == 0.0
    metrics = json.loads((tmp_path / "results/t/zero_shot" / new["run_id"] / "metrics.json").read_text())
    assert metrics["stats"]["generated_samples"] == 0 and metrics["stats"]["cached_samples"] == 40
    # The value equals a fresh run's: a new results folder and a new cache.
    config["results_dir"], config["cache_dir"] = str(tmp_path / "fresh"), str(tmp_path / "fresh_cache")
    path.write_text(yaml.safe_dump(config))
    _cli(tmp_path, path)
    fresh = summary(tmp_path / "fresh/t")[0]
    assert fresh["value"] == new["value"] and fresh["n"] == new["n"] == "40" and fresh["run_id"] == new["run_id"]


def test_run_ids_cover_what_each_stage_reads(tmp_path):
    from ladder.runner import prepare

    (tmp_path / "sft.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    (tmp_path / "pairs.jsonl").write_text('{"chosen": "good", "rejected": "bad"}\n' * 4)
    stages = [{"type": "zero_shot"}, {"type": "few_shot", "k": 2},
              {"type": "few_shot", "name": "yaml_shots",
               "examples": [{"text": "the meal was great", "label": "positive"}]},
              {"type": "sft", "name": "sft_split"}, {"type": "sft", "name": "sft_file", "data": "sft.jsonl"},
              {"type": "reward_model", "data": "pairs.jsonl"}]
    path = experiment(tmp_path, "unused", model=ORACLE, stages=stages)

    def ids():
        plan = prepare(load_experiment(path))
        return {s.name: plan.resolve(s).run_id for s in plan.experiment.stages}

    before = ids()
    assert ids() == before  # nothing changed, nothing moves
    train = tmp_path / "data/train.jsonl"
    train.write_text(train.read_text().replace("was", "is", 1))  # one word of one train row
    after_train = ids()
    assert {k for k in before if before[k] != after_train[k]} == {"few_shot", "sft_split"}
    (tmp_path / "sft.jsonl").write_text('{"prompt": "a", "completion": "c"}\n')
    (tmp_path / "pairs.jsonl").write_text('{"chosen": "better", "rejected": "bad"}\n' * 4)
    after_files = ids()
    assert {k for k in before if after_train[k] != after_files[k]} == {"sft_file", "reward_model"}
    test = tmp_path / "data/test.jsonl"
    test.write_text(test.read_text().replace("meal 3 ", "meal three ", 1))  # a field, not a label
    assert all(after_files[k] != v for k, v in ids().items())  # every stage evaluates the test rows


def test_a_truncated_finished_stage_is_rescored_from_the_cache(tmp_path, capsys):
    path = experiment(tmp_path, "unused", model=ORACLE, stages=STAGES)
    (zero, few) = run_experiment(load_experiment(path))
    run_dir = tmp_path / "results/t/zero_shot" / zero.run_id
    assert zero.stats.records.count == 40
    lines = (run_dir / "samples.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "samples.jsonl").write_text("".join(lines[:9]))
    capsys.readouterr()
    # --only the other stage: the damaged one is reused as it is, but flagged, never silently.
    only = run_experiment(load_experiment(path), only=["few_shot"])
    assert any(g.name == "samples_mismatch" and "9 scored examples where metrics.json summarised 40" in g.message
               for g in only[0].guards)
    assert "samples_mismatch" in summary(tmp_path / "results/t")[0]["flags"]
    assert "samples_mismatch" in " ".join(capsys.readouterr().err.split())
    # A plain re-run repairs it: re-scored, every generation from the cache.
    (again, _) = run_experiment(load_experiment(path))
    assert again.run_id == zero.run_id and again.metric == zero.metric
    assert again.stats.generated_samples == 0 and again.stats.cached_samples == 40
    assert len(read_jsonl(run_dir / "samples.jsonl")) == 40 and (run_dir / "samples.jsonl.damaged").exists()
    assert "samples_mismatch" not in summary(tmp_path / "results/t")[0]["flags"]
