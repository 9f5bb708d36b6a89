"""The storage refuses a trial beyond the study's budget, in the transaction that creates it.

This is the fence the budget rests on: whatever the study lock did (its holder may have stalled past
the server's hold limit and lost it), a trial that would hold a slot beyond the budget is never
created. Checked on SQLite and on the real PostgreSQL and MariaDB servers, with workers racing
without any lock.
"""

from __future__ import annotations

import threading
import uuid

import optuna
import pytest

from hpsearch.errors import BudgetFull
from hpsearch.storage import count_trials, open_storage, refuse_trials_beyond, resolve_storage_url

# Trials are asked for directly here, outside study.optimize, which Optuna warns of with heartbeats.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


@pytest.fixture
def study_name(url):
    name = f"test-{uuid.uuid4().hex[:10]}"
    optuna.create_study(study_name=name, storage=open_storage(resolve_storage_url(url)))
    yield name
    optuna.delete_study(study_name=name, storage=open_storage(resolve_storage_url(url)))


def fenced_study(url: str, name: str, n_slots: int) -> optuna.Study:
    """The study as one worker opens it: its own storage, its own connections."""
    study = optuna.load_study(study_name=name, storage=open_storage(resolve_storage_url(url)))
    refuse_trials_beyond(
        study, n_slots, fail_reason_attr="fail_reason", uncounted_reasons=("interrupted",)
    )
    return study


def test_which_trials_hold_a_slot(url, study_name):
    study = fenced_study(url, study_name, 2)
    first, second = study.ask(), study.ask()
    # Two running trials fill a budget of two: a third is refused, and leaves no row.
    with pytest.raises(BudgetFull, match="no free slot in the budget of 2 trials"):
        study.ask()
    assert count_trials(study) == 2
    # A trial that failed with a reason of its own counts: still no room.
    first.set_user_attr("fail_reason", "out of memory")
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    with pytest.raises(BudgetFull):
        study.ask()
    # An interrupted trial is queued again (WAITING, allowed beyond the count: it takes the place
    # of the trial it re-runs), then fails without counting ...
    second.set_user_attr("fail_reason", "interrupted")
    study.enqueue_trial(second.params)
    study.tell(second, state=optuna.trial.TrialState.FAIL)
    # ... so the waiting re-run holds the slot: asking pops it rather than creating a trial ...
    rerun = study.ask()
    assert rerun.number == 2
    # ... and with it running, the budget is full again.
    with pytest.raises(BudgetFull):
        study.ask()
    # A trial lost with its worker (failed without a reason) frees its slot for a new trial.
    study.tell(rerun, state=optuna.trial.TrialState.FAIL)
    assert study.ask().number == 3
    assert count_trials(study) == 4


def test_workers_racing_without_a_lock_create_exactly_the_budget(url, study_name):
    n_slots, n_workers = 12, 4
    studies = [fenced_study(url, study_name, n_slots) for _ in range(n_workers)]
    created: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(n_workers)

    def work(study: optuna.Study) -> None:
        start.wait()
        try:
            while True:
                created.append(study.ask().number)
        except BudgetFull:
            return
        except BaseException as e:  # noqa: BLE001 - any other error fails the test below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in studies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    # No worker failed otherwise, and together they created exactly the budget, numbered once each.
    assert errors == []
    assert sorted(created) == list(range(n_slots))
    assert count_trials(studies[0]) == n_slots
