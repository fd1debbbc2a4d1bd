"""`ladder.run` / `ladder.check` from Python (ladder/commands.py): what the CLI does, returning the
results as `ladder.load` reads them and raising the CLI's LadderError instead of exiting; and the
YAML read once per command."""

from __future__ import annotations

import re
import sys

import pytest
import yaml
from typer.testing import CliRunner

import ladder
from ladder.errors import ConfigError, LadderError
from tests.conftest import REPO, experiment
from tests.test_cli import ladder as ladder_cli

QUICK = {"subsample.n": 50}
ONLY = ["zero_shot", "few_shot"]
NUMBERS = ["stage", "metric", "value", "ci_low", "ci_high", "n", "prompt_tokens", "completion_tokens", "run_id"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One model-call cache for the module: the quickstart's 50 examples are generated once."""
    return tmp_path_factory.mktemp("cache")


def test_run_returns_the_frames_load_reads_and_the_cli_numbers(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("LADDER_CACHE_DIR", str(cache))
    cli = ladder_cli("run", "configs/quickstart.yaml", "--set", "subsample.n=50", "--set",
                     f"results_dir={tmp_path / 'cli'}", "--only", "zero_shot", "--only", "few_shot",
                     cwd=REPO, env={"LADDER_CACHE_DIR": str(cache)})
    assert cli.returncode == 0, cli.stderr

    res = ladder.run(REPO / "configs/quickstart.yaml", set={**QUICK, "results_dir": str(tmp_path / "py")},
                     only=ONLY)
    again = ladder.load(tmp_path / "py" / "quickstart")
    assert res.stages.equals(again.stages) and res.samples.equals(again.samples)
    assert list(res.stages["stage"]) == ONLY and set(res.stages["n"]) == {50}
    assert len(res.samples) == 2 * 50
    # The same numbers (and run ids) as `ladder run` with the same overrides.
    by_cli = ladder.load(tmp_path / "cli" / "quickstart")
    assert res.stages[NUMBERS].equals(by_cli.stages[NUMBERS])
    # Logged like a CLI run: `ladder log` shows it.
    assert (tmp_path / "py" / "quickstart" / "log.jsonl").exists()


def test_run_takes_the_experiment_as_a_dict(tmp_path, random_model, monkeypatch):
    path = experiment(tmp_path, random_model, n_test=8)
    monkeypatch.chdir(tmp_path)  # a dict's paths are read from the current folder
    res = ladder.run(yaml.safe_load(path.read_text()), set={"generation.max_tokens": 2})
    assert list(res.stages["stage"]) == ["zero_shot"] and res.stages["n"][0] == 8
    assert yaml.safe_load((tmp_path / "results/t/experiment.yaml").read_text())["generation"]["max_tokens"] == 2


@pytest.mark.parametrize("mutate,needle", [
    (lambda p: p.write_text(p.read_text().replace("type: zero_shot", "type: zero_shoot")), "unknown stage type"),
    (lambda p: p.write_text("name: x\ntask: [oops\n"), "malformed YAML"),
    (lambda p: (p.parent / "data/test.jsonl").write_text(""), "empty"),
])
def test_bad_config_raises_the_clis_message_and_writes_nothing(tmp_path, random_model, mutate, needle):
    path = experiment(tmp_path, random_model)
    mutate(path)
    cli = ladder_cli("run", path, cwd=tmp_path)
    assert cli.returncode == 2
    said = " ".join(cli.stderr.split()).removeprefix("error: ")
    for call in (ladder.run, ladder.check):
        with pytest.raises(LadderError) as exc:
            call(path, offline=True) if call is ladder.check else call(path)
        assert needle in str(exc.value)
        assert " ".join(exc.value.render().split()) == said  # the very paragraph the CLI prints
    assert not (tmp_path / "results").exists()


def test_bad_override_and_unknown_variant_raise_config_errors(tmp_path, random_model):
    path = experiment(tmp_path, random_model)
    with pytest.raises(ConfigError, match=r"--set subsample.n=.*fifty"):
        ladder.run(path, set={"subsample.n": "fifty"})
    with pytest.raises(ConfigError, match="no variants"):
        ladder.run(path, variant="a")
    assert not (tmp_path / "results").exists()


def test_a_stage_with_n_0_raises_nothing_measured_as_the_cli_exits_1(tmp_path, monkeypatch):
    from ladder.errors import NothingMeasured
    from ladder.testing.fake_api import FakeAPIServer
    from tests.backends.api_support import KEY, KEY_ENV, api_experiment, sentiment

    monkeypatch.setenv(KEY_ENV, KEY)

    with FakeAPIServer(faults={"500": 1.0}, responder=sentiment) as srv:  # a dead server, no retries
        path = api_experiment(tmp_path, "openai", srv.base_url, model={"max_retries": 0})
        with pytest.raises(NothingMeasured, match=r"scored no example \(n=0\).*40 examples failed"):
            ladder.run(path)
    assert (tmp_path / "results/t/summary.csv").exists()  # what finished is on disk, as after exit 1


def test_check_returns_the_plan_the_cli_prints_as_json(tmp_path, random_model):
    import json

    path = experiment(tmp_path, random_model, stages=[{"type": "zero_shot"}, {"type": "few_shot", "k": 3}])
    plan = ladder.check(path, offline=True)
    cli = ladder_cli("check", path, "--json", "--offline", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert plan == json.loads(cli.stdout)
    assert [s["stage"] for s in plan["stages"]] == ["zero_shot", "few_shot"] and plan["power"]["n"] == 40
    assert not (tmp_path / "results").exists()


@pytest.fixture
def parses(monkeypatch):
    """Counts how often the experiment YAML is parsed (yaml.compose: once per load_experiment) and
    validated (the whole experiment; a variant's own validation is not the YAML's)."""
    import ladder.config.load as load_module

    counts = {"parsed": 0, "validated": 0}
    compose, validate = yaml.compose, load_module.validate

    def counting_compose(*a, **k):
        counts["parsed"] += 1
        return compose(*a, **k)

    def counting_validate(*a, **k):
        counts["validated"] += 1
        return validate(*a, **k)

    monkeypatch.setattr(yaml, "compose", counting_compose)
    monkeypatch.setattr(load_module, "validate", counting_validate)
    return counts


@pytest.mark.parametrize("command", ["run", "check", "climb"])
@pytest.mark.parametrize("variants", [False, True])
def test_the_yaml_is_read_once_per_command(tmp_path, random_model, parses, command, variants):
    from ladder.cli import app

    extra = {"variants": {"a": {}, "b": {"generation.max_tokens": 2}}} if variants else {}
    path = experiment(tmp_path, random_model, n_test=8, **extra)
    args = [command, str(path), "--set", "generation.max_tokens=3"]
    args += ["--offline"] if command == "check" else ["--target", "0"] if command == "climb" else []
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, (out.output, out.exception)
    assert parses == {"parsed": 1, "validated": 1}


def test_the_docs_example_runs(tmp_path, cache, monkeypatch, capsys):
    """docs/python.md's first block, as a notebook runs it, from a folder holding the repo's configs."""
    text = (REPO / "docs/python.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    for name in ("configs", "data"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LADDER_CACHE_DIR", str(cache))
    monkeypatch.setattr(sys, "argv", ["python"])
    exec(compile(block, "docs/python.md", "exec"), {})
    out = capsys.readouterr().out
    assert "zero_shot" in out and "few_shot" in out and "subsample.n" in out and "Fix:" in out
    assert (tmp_path / "results/quickstart/summary.csv").exists()
