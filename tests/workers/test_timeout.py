"""A run's timeout: no trial starts after it; with `budget.at_timeout: stop` the trial still
running stops at its next evaluation and completes with what it reached."""

from __future__ import annotations

import pytest

from hpsearch.study import STOPPED_AT_TIMEOUT_ATTR
from hpsearch.workers.loop import SLOT_DELAY_ENV
from tests.conftest import run_hpsearch, run_study


@pytest.mark.parametrize(("at_timeout", "evaluations"), [("stop", 1), ("finish", 2)])
def test_the_trial_running_at_the_timeout_stops_at_its_next_evaluation_or_finishes(
    workdir, tiny_spec, monkeypatch, at_timeout, evaluations
):
    # 64 tweets at batch 16: 4 steps, evaluated after steps 2 and 4.
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 16}
    tiny_spec["search_space"] = {"learning_rate": {"float": [1e-5, 3e-4], "log": True}}
    tiny_spec["pruner"] = {"name": "none", "evals_per_epoch": 2}
    tiny_spec["budget"] = {"n_trials": 3, "timeout": 1, "at_timeout": at_timeout}
    # The worker counts a free slot at once, then holds it 2 s: its first trial starts after the
    # 1-second timeout, which every evaluation of that trial therefore follows.
    monkeypatch.setenv(SLOT_DELAY_ENV, "2")
    result, study = run_study(workdir, "clock", tiny_spec)
    assert "timeout reached with 2 trials of the budget left" in result.stdout
    [trial] = study.trials
    assert trial.state.name == "COMPLETE"
    assert len(trial.intermediate_values) == evaluations
    # It completed with its last evaluation, which it recorded as the one it stopped at.
    assert trial.value == trial.intermediate_values[evaluations]
    shown = run_hpsearch("status", "--study", "clock", cwd=workdir).stdout
    best = run_hpsearch("best", "--study", "clock", cwd=workdir).stdout
    if at_timeout == "stop":
        assert trial.user_attrs[STOPPED_AT_TIMEOUT_ATTR] == {"evaluation": 1, "steps_left": 2}
        assert "stopped at the timeout" in shown and "trial 0 (completed" in shown
        assert "at evaluation 1 with 2 steps left" in best
    else:
        assert STOPPED_AT_TIMEOUT_ATTR not in trial.user_attrs
        assert "stopped at the timeout" not in shown + best
