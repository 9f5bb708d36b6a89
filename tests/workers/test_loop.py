"""The worker loop on a real SQLite storage: budget, study lock, deadline, repeated failures."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.errors import HpsearchError, TrialFailed
from hpsearch.spec import parse_spec
from hpsearch.storage import StudyLock, open_storage, resolve_storage_url
from hpsearch.study import FAIL_REASON_ATTR, open_study
from hpsearch.workers import run_trials


@pytest.fixture
def setup(tmp_path, tiny_spec):
    url = resolve_storage_url(f"sqlite:///{tmp_path / 'hp.db'}")
    study, _ = open_study(open_storage(url), "loop", parse_spec(tiny_spec, "t"))
    return study, StudyLock(url, "loop"), tmp_path / "hp.db.lock"


def lock_is_free(path) -> bool:
    from filelock import FileLock, Timeout

    try:
        FileLock(str(path)).acquire(timeout=0).lock.release()
    except Timeout:
        return False
    return True


def test_runs_exactly_the_budget_and_leaves_the_lock_free(setup):
    study, lock, lock_path = setup
    started = []

    def runner(trial: optuna.Trial) -> float:
        # Each trial starts after the lock was released for it: other workers are never held by it.
        started.append(lock.held)
        return trial.suggest_float("x", 0, 1)

    run_trials(study, runner, 5, None, lock)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 5
    assert started == [False] * 5
    assert not lock.held and lock_is_free(lock_path)
    # The budget is spent: a second call starts nothing.
    run_trials(study, runner, 5, None, lock)
    assert len(study.trials) == 5


def test_repeated_failure_stops_the_worker_with_the_lock_free(setup):
    study, lock, lock_path = setup

    def runner(trial: optuna.Trial) -> float:
        trial.set_user_attr(FAIL_REASON_ATTR, "out of memory (batch size 64)")
        raise TrialFailed("out of memory (batch size 64)")

    with pytest.raises(
        HpsearchError, match=r"3 trials in a row failed with: out of memory \(batch size 64\)"
    ):
        run_trials(study, runner, 10, None, lock)
    assert [t.state.name for t in study.trials] == ["FAIL"] * 3
    assert not lock.held and lock_is_free(lock_path)


def test_a_passed_deadline_starts_no_further_trial(setup):
    study, lock, lock_path = setup
    run_trials(study, lambda trial: 0.0, 5, 0.0, lock)
    assert study.trials == []
    assert lock_is_free(lock_path)
