"""Local plugin files (`plugins:` in the YAML, `--plugin` on the command line) and `ladder check`
on plugin stages: a stage that implements only run() is planned without a crash, and a plugin's
own bug, or a plugin that is missing or does not import, is a one-paragraph error (exit 2) naming
the plugin and where it was asked for — never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from tests.conftest import REPO
from tests.stages.test_passes import TWICE

RUN_ONLY = TWICE
"""A stage that implements only run() (two `ladder.evaluate` calls), as the guide allows."""

BROKEN_PLAN = RUN_ONLY.replace('"twice"', '"broken_plan"') + '''

    def plan(self, ctx):
        return {}["missing"]
'''


def write(tmp_path, stage_type: str, plugins: list[str] | None, code: dict[str, str] | None = None):
    folder = tmp_path / "exp"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    with open(folder / "data" / "test.jsonl", "w", encoding="utf-8") as f:
        for i in range(6):
            f.write(json.dumps({"text": f"review {i}", "label": "positive"}) + "\n")
    for name, text in (code or {}).items():
        (folder / name).write_text(text, encoding="utf-8")
    config = {"name": "plug", "results_dir": str(tmp_path / "results"),
              **({"plugins": plugins} if plugins is not None else {}),
              "task": {"data": {"test": "data/test.jsonl"}, "target": "label", "template": "{text}"},
              "model": {"backend": "openai", "name": "gpt-4o-mini", "base_url": "http://127.0.0.1:9/v1",
                        "api_key_env": "LADDER_TEST_OPENAI_KEY"},
              "stages": [{"type": "zero_shot"}, {"type": stage_type}]}
    path = folder / "plug.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def ladder(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LADDER_TEST_OPENAI_KEY": "sk-test"}
    return subprocess.run([sys.executable, "-m", "ladder.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_check_plans_a_run_only_plugin_stage_without_crashing(tmp_path):
    path = write(tmp_path, "twice", ["echo.py"], {"echo.py": RUN_ONLY})
    out = ladder("check", path, "--offline", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "twice: no estimate (Twice implements only run()" in " ".join(out.stdout.split())
    plan = json.loads(ladder("check", path, "--offline", "--json", cwd=tmp_path).stdout)
    assert plan["stages"][0]["samples"] == 6 and "no_estimate" in plan["stages"][1]


def test_a_plugins_exception_in_check_names_the_stage_and_its_file(tmp_path):
    path = write(tmp_path, "broken_plan", ["broken.py"], {"broken.py": BROKEN_PLAN})
    out = ladder("check", path, "--offline", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    said = " ".join(out.stderr.split())
    assert "stage 'broken_plan'" in said and str(path.parent / "broken.py") in said and "KeyError" in said


def test_a_plugins_exception_in_check_inputs_is_said_by_run_too(tmp_path):
    code = RUN_ONLY.replace('"twice"', '"bad_inputs"') + '''

    @staticmethod
    def check_inputs(cfg, task):
        raise ValueError("no such column")
'''
    path = write(tmp_path, "bad_inputs", ["inputs.py"], {"inputs.py": code})
    out = ladder("run", path, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    said = " ".join(out.stderr.split())
    assert "stage 'bad_inputs'" in said and "checked its inputs: ValueError: no such column" in said
    assert str(path.parent / "inputs.py") in said and not (tmp_path / "results").exists()


def test_a_missing_plugin_file_is_refused_naming_it_and_the_yaml(tmp_path):
    path = write(tmp_path, "zero_shot", ["nowhere.py"])
    out = ladder("check", path, "--offline", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    said = " ".join(out.stderr.split())
    assert str(path) in said and "plugins.0" in said and "plugin file 'nowhere.py' not found" in said
    assert not (tmp_path / "results").exists()


def test_a_plugin_that_fails_to_import_says_which_line(tmp_path):
    path = write(tmp_path, "zero_shot", ["bad.py"], {"bad.py": "import ladder\n\nx = 1 / 0\n"})
    out = ladder("run", path, cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    said = " ".join(out.stderr.split())
    assert "plugin 'bad.py' failed to import: ZeroDivisionError" in said and "bad.py:3" in said


def test_a_plugin_module_that_is_not_installed_is_refused(tmp_path):
    path = write(tmp_path, "zero_shot", None)
    out = ladder("check", path, "--offline", "--plugin", "no_such_pkg.metrics", cwd=tmp_path)
    assert out.returncode == 2 and "plugin module 'no_such_pkg.metrics' not found" in " ".join(out.stderr.split())


def test_a_plugin_module_by_name_registers_its_classes(tmp_path, monkeypatch):
    """`plugins: [module]`: an importable module, loaded by name, its classes registered."""
    from ladder import registry
    from ladder.commands import check

    for reg in registry.REGISTRIES.values():
        monkeypatch.setattr(reg, "_targets", dict(reg._targets))
    monkeypatch.setenv("LADDER_TEST_OPENAI_KEY", "sk-test")
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "echo_mod.py").write_text(RUN_ONLY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    path = write(tmp_path, "twice", ["echo_mod"])
    try:
        plan = check(path, offline=True)
    finally:
        sys.modules.pop("echo_mod", None)
    assert [s["stage"] for s in plan["stages"]] == ["zero_shot", "twice"]
    assert registry.STAGES._targets["twice"] == "echo_mod:Twice"
