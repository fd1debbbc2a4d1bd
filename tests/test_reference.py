"""docs/reference.md is written from the pydantic models, and `ladder help KEY` reads the same."""

from __future__ import annotations

from ladder.reference import entries, explain, render
from tests.conftest import REPO
from tests.test_cli import ladder


def test_the_checked_in_reference_is_what_the_models_say():
    # Edit a field's docstring and this fails until `python scripts/gen_reference.py` is re-run.
    assert (REPO / "docs/reference.md").read_text() == render(), "run: python scripts/gen_reference.py"


def test_every_field_of_every_section_is_in_the_reference():
    from ladder.config.schema import ExperimentConfig
    from ladder.stages.sft import SFT

    text = render()
    for e in list(entries(ExperimentConfig)) + list(entries(SFT.Config, "stages[type=sft]")):
        assert f"| `{e.path}` |" in text
    assert ("| `generation.n` | int | 1 | Samples per prompt. Metrics average over a prompt's samples first, "
            "so n stays per example. |") in text
    assert "## Stage `sft`" in text and "## Backend `openai`" in text and "## Scorer `judge`" in text


def test_a_docstring_change_shows_in_the_rendered_reference(monkeypatch):
    from ladder.config.schema import GenerationConfig

    info = GenerationConfig.model_fields["n"]
    monkeypatch.setattr(info, "description", "A changed description.")
    assert "| `generation.n` | int | 1 | A changed description. |" in render()
    assert (REPO / "docs/reference.md").read_text() != render()  # the drift test above would fail


def test_ladder_help_prints_one_key_and_refuses_an_unknown_one(tmp_path):
    r = ladder("help", "generation.max_tokens")
    assert r.returncode == 0 and "generation.max_tokens  int, default 32" in r.stdout
    assert "Most new tokens per sample" in r.stdout
    assert {e.path for e in explain("learning_rate")} >= {"stages[type=sft].learning_rate", "stages[type=rl].learning_rate"}
    r = ladder("help", "no_such_key")
    assert r.returncode == 2 and "no config key 'no_such_key'" in r.stdout + r.stderr and "Traceback" not in r.stderr
