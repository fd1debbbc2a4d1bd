"""`ladder try`: the playground's core from a terminal, against the fake OpenAI server."""

from __future__ import annotations

import json

import pytest
import yaml

from ladder.store import read_jsonl
from ladder.testing.fake_api import FakeAPIServer
from tests.backends.api_support import KEY
from tests.play.support import fake_experiment, ladder, responder


@pytest.fixture
def srv():
    with FakeAPIServer(responder=responder) as server:
        yield server


def cells(folder, label=None):
    (path,) = (folder / "playground").glob("*.jsonl")
    return [c for c in read_jsonl(path) if c["kind"] == "cell" and (label is None or c["model"].endswith(label))]


def test_two_models_print_both_columns_with_metric_and_paired_delta(tmp_path, srv):
    cfg = fake_experiment(tmp_path, srv.base_url)
    r = ladder("try", str(cfg), "--model", "fake-good", "--model", "fake-lazy", "--n", "8")
    assert r.returncode == 0, r.stderr
    assert "openai:fake-good" in r.stdout and "openai:fake-lazy" in r.stdout
    assert r.stdout.count("neutral ✗") >= 3  # fake-lazy's answers are in its column
    assert "choice" in r.stdout and "n=8" in r.stdout and "Δ " in r.stdout
    got = cells(tmp_path / "results" / "t")
    assert len(got) == 16 and {c["model"] for c in got} == {"openai:fake-good", "openai:fake-lazy"}
    assert all(c["outputs"] and c["cost"] > 0 for c in got)
    again = ladder("try", str(cfg), "--model", "fake-good", "--model", "fake-lazy", "--n", "8")
    assert again.returncode == 0 and srv.stats()["successes"] == 16  # the re-run came from the cache


def test_saved_variant_is_what_ladder_run_scores_on_the_same_rows(tmp_path, srv):
    cfg = fake_experiment(tmp_path, srv.base_url)
    cfg.write_text("# my experiment: keep this comment\n" + cfg.read_text() + "# and this one at the end\n")
    before = cfg.read_text()
    r = ladder("try", str(cfg), "--model", "fake-lazy", "--n", "10", "--shots", "test-5,test-23",
               "--instruction", "Label the review.", "--save-variant", "pinned")
    assert r.returncode == 0, r.stderr
    text = cfg.read_text()
    assert text.startswith(before) and "variants:" in text  # comments and layout kept: only lines added
    raw = yaml.safe_load(text)
    assert raw["variants"]["base"] == {}
    entry = raw["variants"]["pinned"]
    assert entry["task.instruction"] == "Label the review." and entry["stages"][0]["type"] == "few_shot"
    assert [s["label"] for s in entry["stages"][0]["examples"]] == ["positive", "negative"]
    got = cells(tmp_path / "results" / "t")
    play = {c["row"]: c["score"] for c in got if c["label"] == "v1"}
    base = {c["row"]: c["score"] for c in got if c["label"] == "v0"}  # the YAML's prompt, beside it
    assert len(play) == len(base) == 10 and play != base  # the pinned shots changed some answers

    run = ladder("run", str(cfg), "--variant", "pinned")
    assert run.returncode == 0, run.stderr
    (samples,) = (tmp_path / "results" / "t" / "variants" / "pinned" / "few_shot").glob("*/samples.jsonl")
    scored = {rec["id"]: rec["score"] for rec in read_jsonl(samples)}
    assert len(scored) == 30 and {r: scored[r] for r in play} == play
    # 20 from try (the YAML's prompt and the pinned one), then only the 20 rows try did not show: the
    # 10 playground rows came from the cache, so the run sent the very same requests
    assert srv.stats()["successes"] == 40


def test_save_refuses_a_yaml_changed_on_disk_and_writes_nothing(tmp_path, srv):
    from ladder.errors import ConfigError
    from ladder.play.variant import digest, save

    cfg = fake_experiment(tmp_path, srv.base_url)
    opened = digest(cfg)
    cfg.write_text(cfg.read_text() + "# edited meanwhile\n")
    edited = cfg.read_text()
    with pytest.raises(ConfigError, match="changed on disk"):
        save(cfg, "late", {"task.instruction": "x"}, opened)
    assert cfg.read_text() == edited


def test_save_adds_to_an_existing_variants_block(tmp_path, srv):
    from ladder.play.variant import save

    cfg = fake_experiment(tmp_path, srv.base_url, variants={"a": {}, "b": {"generation.temperature": 0.5}})
    cfg.write_text(cfg.read_text() + "seed: 0  # after the block\n")
    save(cfg, "c", {"task.instruction": "new"})
    assert list(yaml.safe_load(cfg.read_text())["variants"]) == ["a", "b", "c"]


def test_bad_inputs_each_say_what_and_keep_the_other_columns(tmp_path, srv):
    cfg = fake_experiment(tmp_path, srv.base_url)
    r = ladder("try", str(cfg), "--template", "Review: {nosuch}", "--n", "3")
    assert r.returncode == 2 and "failed on every row" in r.stderr and "nosuch" in r.stderr, r.stdout + r.stderr
    assert "positive ✓" in r.stdout  # the YAML's prompt beside it still ran
    down = json.dumps({"backend": "openai", "name": "gone", "base_url": "http://127.0.0.1:9/v1", "api_key_env": None})
    r = ladder("try", str(cfg), "--model", "fake-good", "--model", down, "--n", "3")
    assert r.returncode == 2 and "failed on every row" in r.stderr, r.stderr
    assert "positive" in r.stdout or "negative" in r.stdout
    assert "127.0.0.1:9" in r.stdout and "error" in r.stdout  # its cells say why
    r = ladder("try", str(cfg), "--model", "fake-lazy", "--n", "3", "--budget", "0.000001")
    assert r.returncode == 2 and "budget" in r.stderr and "Traceback" not in r.stderr, r.stdout + r.stderr


def test_keys_never_reach_the_log_or_the_yaml_and_ladder_log_lists_sessions(tmp_path, srv):
    cfg = fake_experiment(tmp_path, srv.base_url)
    assert ladder("try", str(cfg), "--n", "3", "--save-variant", "v").returncode == 0
    assert ladder("try", str(cfg), "--n", "3", "--message", "hello there").returncode == 0
    folder = tmp_path / "results" / "t"
    for path in [*(folder / "playground").glob("*.jsonl"), cfg]:
        assert KEY not in path.read_text()
    r = ladder("log", str(folder))
    assert r.returncode == 0 and "Playground sessions" in r.stdout and r.stdout.count("openai:fake-good") == 2
    assert "saved as variants v" in r.stdout
