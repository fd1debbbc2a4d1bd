"""The run ids of the shipped examples are pinned: a restructuring (moving code, adding a config
field with a default) must not give every user's finished results a new folder. A change that
*should* re-run them (the choice metric's code, a new field that changes outputs) updates the
numbers here on purpose, and says so in its commit."""

import pytest

from ladder.config.load import load_experiment
from ladder.runner import prepare

from tests.conftest import REPO as ROOT

PINNED = {
    "configs/quickstart.yaml": {"zero_shot": "b5cdbd4a6111", "few_shot": "cb769a8bb031",
                                "few_shot_max": "7210752a9f2c", "best_of_n": "1c38f510c0e8",
                                "sft": "c76cc01a509c", "rl": "92cab29fa1d3"},
    "configs/multiple_choice.yaml": {"zero_shot": "a7966d7c1d2d", "few_shot": "dea775d22888"},
}


@pytest.mark.parametrize("config", sorted(PINNED))
def test_shipped_examples_keep_their_run_ids(config):
    exp = load_experiment(ROOT / config)
    plan = prepare(exp)
    ids = {st.name: plan._run_id(plan.resolve(st, planning=True)) for st in exp.stages}
    assert ids == PINNED[config]
