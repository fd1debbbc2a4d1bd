"""docs/extending.md runs: its metric, stage and backend files and registration lines are taken
from the guide's own text, installed in a temporary folder and run through a real experiment
(the stage also on a model an sft stage trained, named with `from_stage`), so the guide cannot rot."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

GUIDE = REPO / "docs" / "extending.md"
WORD = {"positive": "great", "negative": "awful", "neutral": "fine"}


def guide_parts() -> tuple[dict[str, str], list[tuple[str, str, str]], dict]:
    """(file name → code, [(group, name, target)], the experiment YAML) as the guide writes them."""
    text = GUIDE.read_text(encoding="utf-8")
    files = dict(re.findall(r"```python\n# (\w+\.py)\n(.*?)```", text, re.S))
    entries = re.findall(r'```toml\n\[project\.entry-points\."ladder\.(\w+)"\]\n(\w+) = "([\w.:]+)"\n```', text)
    return files, entries, guide_yaml("extending.yaml")


def guide_yaml(name: str) -> dict:
    """The guide's YAML block that starts with `# <name>`."""
    (config,) = re.findall(rf"```yaml\n# {re.escape(name)}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)
    return yaml.safe_load(config)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The guide's files on sys.path and its entry points registered, for this test only."""
    import ladder
    from ladder import registry

    files, entries, config = guide_parts()
    assert set(files) == {"ladder_f1.py", "ladder_cot.py", "ladder_keyword.py", "ladder_refine.py"}
    assert {group for group, _, _ in entries} == {"metrics", "stages", "backends"}
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name, code in files.items():
        (plugins / name).write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(plugins))
    for reg in registry.REGISTRIES.values():  # registrations end with the test
        monkeypatch.setattr(reg, "_targets", dict(reg._targets))
    for group, name, target in entries:
        ladder.register(group.removesuffix("s"), name, target)
    yield config
    for name in files:
        sys.modules.pop(name.removesuffix(".py"), None)


def write_data(folder, n: int, seed: int) -> None:
    import random

    rng = random.Random(seed)
    folder.mkdir(exist_ok=True)
    with open(folder / ("train.jsonl" if seed else "test.jsonl"), "w", encoding="utf-8") as f:
        for i in range(n):
            label = rng.choice(sorted(WORD))
            meal = "dinner" if seed else "meal"  # no test prompt among the training ones
            f.write(json.dumps({"text": f"the {meal} {i} was {WORD[label]}", "label": label}) + "\n")


def rambling(req, i):
    """The fine-tuned model knows the answer; asked to think step by step, it says a lot more."""
    word = re.search(r"the \w+ \d+ was (\w+)", req.prompt).group(1)
    label = next(lb for lb, w in WORD.items() if w == word)
    if "step by step" in req.prompt:
        return f"Let me think step by step about this review before I answer: it reads {label}"
    return label


def test_the_guides_metric_stage_and_backend_run_an_experiment(installed, tmp_path, monkeypatch):
    from ladder.advice import next_steps
    from ladder.config import load_experiment
    from ladder.evidence import Evidence
    from ladder.runner import run_experiment
    from ladder.stages import Stage
    from ladder.testing.fake_api import FakeAPIServer

    write_data(tmp_path / "data", 20, seed=0)
    write_data(tmp_path / "data", 20, seed=1)
    monkeypatch.setenv("LADDER_TEST_OPENAI_KEY", "sk-test")
    with FakeAPIServer(responder=rambling) as srv:
        srv.app.fine_tuning.polls = 1
        api = {"backend": "openai", "name": "gpt-4o-mini", "base_url": srv.openai_base_url,
               "api_key_env": "LADDER_TEST_OPENAI_KEY", "max_retries": 0}
        config = {**installed, "results_dir": str(tmp_path / "results"), "stages": [
            *installed["stages"],
            {"type": "sft", "model": api, "epochs": 1, "poll_interval": 0.01},
            # The guide's stage on the model the sft stage produced.
            {"type": "cot", "name": "cot_sft", "model": {**api, "from_stage": "sft"}}]}
        path = tmp_path / "extending.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        results = run_experiment(load_experiment(path))

    zero, cot, sft, cot_sft = results
    assert [r.type for r in results] == ["zero_shot", "cot", "sft", "cot"]
    assert zero.metric_name == "f1" and zero.metric.n == 20
    # The keyword backend answers every review right, with or without the cue.
    assert zero.metric.value == 1.0 and cot.metric.value == 1.0
    samples = [json.loads(line) for line in (tmp_path / "results" / "extending" / "cot" / cot.run_id
                                             / "samples.jsonl").read_text().splitlines()]
    assert samples[0]["prompt"][-1]["content"].endswith("final answer on the last line.")
    assert samples[0]["cue"].startswith("Think step by step")
    # from_stage: the fine-tuned model answered, at length; F1 gives partial credit only.
    assert sft.products.model["name"].startswith("ft:gpt-4o-mini")
    assert 0 < cot_sft.metric.value < 0.3

    ev = Evidence.load(tmp_path / "results" / "extending")
    cls = ev.stage_class(cot_sft)
    assert issubclass(cls, Stage) and ev.family(cot_sft) == "prompting" and ev.reference.stage == "zero_shot"
    worse = [s for s in next_steps(ev) if s.rule == "few_shot_worse"]
    assert [s.text.split(" is worse")[0] for s in worse] == ["cot_sft"]  # advice by family, its own text
    assert cls.advice_if_worse in worse[0].text
    table = (tmp_path / "results" / "extending" / "summary.md").read_text()
    assert "| cot_sft |" in table and "few_shot_worse" in table


def test_a_later_stage_cannot_take_a_model_from_the_prompting_stage(installed, tmp_path):
    from ladder.config import load_experiment
    from ladder.errors import ConfigError

    write_data(tmp_path / "data", 20, seed=0)
    write_data(tmp_path / "data", 20, seed=1)
    config = {**installed, "results_dir": str(tmp_path / "results"),
              "stages": [{"type": "cot"}, {"type": "zero_shot", "model": {"from_stage": "cot"}}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError, match="does not produce one"):  # caught before anything runs
        load_experiment(path)
    assert not (tmp_path / "results").exists()


def test_the_public_surface_loads_lazily_without_torch():
    code = ("import sys, ladder\n"
            "assert 'ladder.stages' not in sys.modules\n"
            "for name in ladder.__all__: getattr(ladder, name)\n"
            "heavy = [m for m in ('torch', 'transformers', 'openai', 'anthropic') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert issubclass(ladder.ConfigError, ladder.LadderError)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_register_refuses_a_kind_or_target_it_does_not_know():
    import ladder

    with pytest.raises(ValueError, match="kind must be one of"):
        ladder.register("scorer", "x", "m:X")
    with pytest.raises(ValueError, match="module:attr"):
        ladder.register("metric", "x", "m.X")


def drafts_wrong(req, i):
    """A model whose first answer is always 'neutral' and whose revision (asked to check) is right."""
    text = " ".join(m["content"] for m in req.messages)
    word = re.search(r"the \w+ \d+ was (\w+)", text).group(1)
    if "Check your answer" in req.prompt:
        return next(lb for lb, w in WORD.items() if w == word)
    return "neutral"


def cli(*args, cwd, check=True):
    """`ladder ...` in a subprocess, this checkout's code first on the path."""
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO), "LADDER_TEST_OPENAI_KEY": "sk-test"}
    out = subprocess.run([sys.executable, "-m", "ladder.cli", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def plugin_folder(tmp_path, files: list[str], config: dict, name: str = "exp.yaml"):
    """The guide's `files` and `config` (its data) in a folder of their own: tmp_path/exp."""
    code, _, _ = guide_parts()
    folder = tmp_path / "exp"
    folder.mkdir(exist_ok=True)
    for f in files:
        (folder / f).write_text(code[f], encoding="utf-8")
    write_data(folder / "data", 20, seed=0)
    path = folder / name
    path.write_text(yaml.safe_dump({**config, "results_dir": str(tmp_path / "results")}, sort_keys=False),
                    encoding="utf-8")
    return path


def test_the_guides_self_refine_reports_its_revision_and_check_counts_both_passes(tmp_path):
    """`plugins:` in a YAML in another folder loads the guide's two-pass stage; its row is the
    revision's score, not the draft's, and `ladder check` counts both passes' calls."""
    from ladder.testing.fake_api import FakeAPIServer

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    with FakeAPIServer(responder=drafts_wrong) as srv:
        api = {"backend": "openai", "name": "gpt-4o-mini", "base_url": srv.openai_base_url,
               "api_key_env": "LADDER_TEST_OPENAI_KEY", "max_retries": 0}
        config = {**guide_yaml("refine.yaml"), "plugins": ["ladder_refine.py"], "model": api,
                  "metric": "exact_match"}
        path = plugin_folder(tmp_path, ["ladder_refine.py"], config)
        plan = json.loads(cli("check", str(path), "--json", "--offline", cwd=elsewhere).stdout)
        zero, refine = plan["stages"]
        assert zero["samples"] == 20 and refine["samples"] == 40 and refine["passes"] == 2
        assert refine["prompt_tokens"] > 2 * zero["prompt_tokens"]  # the revision carries the draft
        cli("run", str(path), cwd=elsewhere)
    rows = {r["stage"]: r for r in csv_rows(tmp_path / "results" / "refine" / "summary.csv")}
    labels = [json.loads(line)["label"] for line in (path.parent / "data" / "test.jsonl").read_text().splitlines()]
    # The drafts ('neutral' for every review), then the revisions: all right.
    assert float(rows["zero_shot"]["value"]) == labels.count("neutral") / 20 < 1.0
    assert float(rows["self_refine"]["value"]) == 1.0
    records = [json.loads(line) for line in (tmp_path / "results" / "refine" / "self_refine" /
                                             rows["self_refine"]["run_id"] / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 20 and {r["draft"] for r in records} == {"neutral"}
    # The drafts were paid for too: the row's tokens and cost are both passes', not the revisions' alone
    # (the drafts are zero_shot's very prompts).
    stats = {st: json.loads((tmp_path / "results" / "refine" / st / rows[st]["run_id"] / "metrics.json").read_text())["stats"]
             for st in ("zero_shot", "self_refine")}
    revisions = sum(s["prompt_tokens"] for r in records for s in r["samples"])
    assert stats["self_refine"]["prompt_tokens"] == revisions + stats["zero_shot"]["prompt_tokens"]
    assert stats["self_refine"]["cost_usd"] > stats["zero_shot"]["cost_usd"] > 0


def csv_rows(path):
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_guides_plugin_yaml_runs_from_another_folder(tmp_path, monkeypatch):
    """The guide's refine.yaml as written: its plugins beside it, the command run elsewhere. Reading
    the results later (another process) loads the plugins experiment.yaml records: the stage's
    family is known, not guessed."""
    from ladder import registry
    from ladder.evidence import Evidence

    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    config = guide_yaml("refine.yaml")
    path = plugin_folder(tmp_path, config["plugins"], config, "refine.yaml")
    out = cli("run", str(path), cwd=elsewhere)
    assert "self_refine exact_match" in out.stderr + out.stdout
    rows = {r["stage"]: r for r in csv_rows(tmp_path / "results" / "refine" / "summary.csv")}
    assert set(rows) == {"zero_shot", "self_refine"} and float(rows["zero_shot"]["value"]) > 0
    for reg in registry.REGISTRIES.values():  # what loading the results registers ends with the test
        monkeypatch.setattr(reg, "_targets", dict(reg._targets))
    try:
        ev = Evidence.load(tmp_path / "results" / "refine")
        assert [ev.family(r) for r in ev.results] == ["prompting", "prompting"]
    finally:
        for name in config["plugins"]:
            sys.modules.pop(name.removesuffix(".py"), None)


def test_plugin_on_the_command_line_loads_the_stage(tmp_path):
    config = {k: v for k, v in guide_yaml("refine.yaml").items() if k != "plugins"}
    path = plugin_folder(tmp_path, ["ladder_refine.py", "ladder_keyword.py"], config)
    refused = cli("check", str(path), "--offline", cwd=path.parent, check=False)
    assert refused.returncode == 2 and "unknown" in refused.stderr
    out = cli("check", str(path), "--offline", "--plugin", "ladder_refine.py", "--plugin", "ladder_keyword.py",
              cwd=path.parent)
    assert "self_refine: 2 passes of model calls (40 samples in all)" in " ".join(out.stdout.split())
    cli("run", str(path), "--plugin", "exp/ladder_refine.py", "--plugin", str(path.parent / "ladder_keyword.py"),
        cwd=tmp_path)
    assert {r["stage"] for r in csv_rows(tmp_path / "results" / "refine" / "summary.csv")} == \
        {"zero_shot", "self_refine"}


def test_an_import_path_type_works_with_the_guides_literal_config(installed, tmp_path):
    """`type: ladder_cot:CoT`: the class's Config declares type Literal["cot"], which the run records."""
    from ladder.config import load_experiment
    from ladder.runner import run_experiment

    write_data(tmp_path / "data", 20, seed=0)
    write_data(tmp_path / "data", 20, seed=1)
    config = {**installed, "results_dir": str(tmp_path / "results"), "stages": [{"type": "ladder_cot:CoT"}]}
    path = tmp_path / "path.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    (cot,) = run_experiment(load_experiment(path))
    assert cot.type == "cot" and cot.metric.n == 20
