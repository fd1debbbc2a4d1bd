"""The marker of a finished training run, and of an RL policy, is one file with one format."""

from __future__ import annotations

import json

from ladder.marker import (is_rl_policy, read_marker, rl_marker, training_finished,
                                    write_marker)


def test_marker_round_trip_and_rl_policy(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    assert not training_finished(folder) and not is_rl_policy(folder)
    write_marker(folder, {"steps": 8, **rl_marker("grpo")})
    # The file name is the on-disk contract the hf backend and earlier results rely on.
    assert json.loads((folder / "ladder_training.json").read_text()) == {"steps": 8, "policy": "rl",
                                                                          "algorithm": "grpo"}
    assert training_finished(folder) and is_rl_policy(folder) and read_marker(folder)["steps"] == 8


def test_other_markers_and_unreadable_ones_are_no_rl_policy(tmp_path):
    sft, pm, broken, listed = (tmp_path / n for n in ("sft", "pm", "broken", "listed"))
    write_marker(sft, {"steps": 3})
    write_marker(pm, {"policy": "reward_model"})
    broken.mkdir()
    (broken / "ladder_training.json").write_text("{not json")
    write_marker(listed, ["rl"])  # type: ignore[arg-type]
    assert training_finished(sft) and not any(is_rl_policy(f) for f in (sft, pm, broken, listed))
