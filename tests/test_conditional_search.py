"""A conditional search space through `hpsearch run`: real trials train, each with the parameters
its conditions allow, and the stored trials show only those."""

from __future__ import annotations

import math

import pytest

from tests.conftest import run_hpsearch, run_study, write_spec
from tests.test_cli import assert_one_line_error

pytestmark = pytest.mark.slow

BATCH = "per_device_train_batch_size"


def test_a_conditional_space_trains_and_stores_only_what_each_trial_sampled(workdir, tiny_spec):
    # A learning-rate range per batch size, and max_steps searched only at batch 16. The random
    # sampler with seed 1 draws batch 32, 16, 32.
    tiny_spec["search_space"] = {
        BATCH: {"choice": [16, 32]},
        "learning_rate": [
            {"float": [1e-5, 1e-4], "log": True, "when": {BATCH: 16}},
            {"float": [1e-4, 1e-3], "log": True, "when": {BATCH: 32}},
        ],
        "max_steps": {"choice": [3, 5], "when": {BATCH: 16}},
    }
    tiny_spec["sampler"] = {"name": "random", "seed": 1}
    tiny_spec["pruner"] = {"name": "none", "evals_per_epoch": 2}
    tiny_spec["budget"] = {"n_trials": 3}
    _, study = run_study(workdir, "conditional", tiny_spec)

    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    assert {t.params[BATCH] for t in trials} == {16, 32}
    for trial in trials:
        batch = trial.params[BATCH]
        # Each trial's learning rate lies in its batch size's range, stored under its plain name.
        low, high = (1e-5, 1e-4) if batch == 16 else (1e-4, 1e-3)
        assert low <= trial.params["learning_rate"] <= high
        if batch == 16:
            # max_steps was sampled, and the trial trained that many steps.
            assert trial.user_attrs["n_steps_planned"] == trial.params["max_steps"]
        else:
            # Left out: the trial trained its one epoch (64 rows at 32 a step).
            assert "max_steps" not in trial.params
            assert trial.user_attrs["n_steps_planned"] == math.ceil(64 / 32)


def test_a_condition_naming_an_unknown_parameter_exits_2_and_writes_nothing(workdir, tiny_spec):
    tiny_spec["search_space"]["warmup_ratio"] = {"float": [0, 0.1], "when": {"optim": "adamw"}}
    write_spec(workdir, "bad", tiny_spec)
    result = run_hpsearch("run", "--study", "bad", cwd=workdir)
    assert_one_line_error(
        result,
        2,
        "studies/bad.yaml: search_space.warmup_ratio.when: optim is neither searched nor fixed",
    )
    assert not (workdir / "storage").exists()
