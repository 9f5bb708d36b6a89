"""A trial's end and its re-run in one transaction (hpsearch.storage.rerun), on SQLite and on the
real PostgreSQL and MariaDB servers: two callers at once make one re-run, the re-run starts clean,
and a trial lost too often is not re-run."""

from __future__ import annotations

import threading
import uuid

import optuna
import pytest

from hpsearch.spec import HeartbeatSpec
from hpsearch.storage import (
    FAIL_REASON_ATTR,
    INTERRUPTED,
    LOST,
    apply_heartbeat,
    fail_for_rerun,
    open_storage,
    rerun_when_failed,
    resolve_storage_url,
)
from hpsearch.study import n_spent


@pytest.fixture
def study_name(url):
    name = f"test-rerun-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        optuna.delete_study(study_name=name, storage=open_storage(resolve_storage_url(url)))
    except KeyError:
        pass


def open_study(url: str, name: str, max_retries: int = 3) -> optuna.Study:
    """The study through a storage of its own, as each worker process opens one."""
    storage = open_storage(resolve_storage_url(url))
    apply_heartbeat(storage, HeartbeatSpec(interval=1, grace_period=2, max_retries=max_retries))
    return optuna.create_study(study_name=name, storage=storage, load_if_exists=True)


def start_trial_with_history(study: optuna.Study) -> optuna.Trial:
    """A running trial as a worker leaves it mid-training: parameters, where it runs, its group, a
    pruner rung and an evaluation."""
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True)
    trial.suggest_categorical("per_device_train_batch_size", [16, 32])
    for key, value in {"seed": 7, "host": "node-1", "pid": 123, "group": "g-1"}.items():
        trial.set_user_attr(key, value)
    study._storage.set_trial_system_attr(trial._trial_id, "completed_rung_0", 0.5)
    trial.report(0.5, 1)
    return trial


def frozen(study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    return study.trials[trial.number]


def reruns_of(study: optuna.Study, number: int) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.user_attrs.get("rerun_of") == number]


def test_two_callers_at_once_make_one_rerun(url, study_name):
    first, second = open_study(url, study_name), open_study(url, study_name)
    running = frozen(first, start_trial_with_history(first))
    barrier, results = threading.Barrier(2), []

    def end(study: optuna.Study, reason: str) -> None:
        barrier.wait()
        results.append((reason, fail_for_rerun(study, running, reason)))

    threads = [
        threading.Thread(target=end, args=(first, INTERRUPTED)),
        threading.Thread(target=end, args=(second, LOST)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [reason for reason, ended in results if ended]
    # One of the two ended the trial; the other found it ended and wrote nothing.
    assert len(winners) == 1, results
    trials = first.trials
    dead = trials[0]
    # The trial is FAIL with the winner's reason, and has exactly one re-run.
    assert dead.state.name == "FAIL" and dead.user_attrs[FAIL_REASON_ATTR] == winners[0]
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    rerun = trials[1]
    # The re-run carries the parameters, the seed and the link, and no other history.
    assert rerun.user_attrs == {"seed": 7, "rerun_of": 0}
    assert rerun.system_attrs == {"fixed_params": dead.params}
    assert rerun.intermediate_values == {} and rerun.params == {}
    # Neither the dead trial nor its waiting re-run counts toward the budget yet.
    assert n_spent(trials) == 0


def test_ctrl_c_path_reruns_in_optunas_own_fail(url, study_name):
    study = open_study(url, study_name)
    running = start_trial_with_history(study)
    # The runner on Ctrl-C registers the re-run; Optuna's tell then FAILs the trial, and that
    # write records the reason and queues the re-run.
    rerun_when_failed(running, INTERRUPTED)
    study.tell(running, state=optuna.trial.TrialState.FAIL)
    dead = frozen(study, running)
    assert dead.user_attrs[FAIL_REASON_ATTR] == INTERRUPTED
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    # The next ask takes the re-run, and suggesting gives back the dead trial's values.
    trial = study.ask()
    assert trial.number == 1
    assert (
        trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True) == dead.params["learning_rate"]
    )
    assert (
        trial.suggest_categorical("per_device_train_batch_size", [16, 32])
        == dead.params["per_device_train_batch_size"]
    )


def test_a_trial_lost_more_than_max_retries_times_is_not_rerun(url, study_name):
    study = open_study(url, study_name, max_retries=1)
    dead = frozen(study, start_trial_with_history(study))
    # Lost once: re-run (max_retries 1).
    assert fail_for_rerun(study, dead, LOST)
    rerun = study.ask()
    assert rerun.number == 1 and rerun.user_attrs["rerun_of"] == 0
    # Its re-run lost too: the chain has been lost twice, more than max_retries, so it ends with a
    # reason that counts toward the budget and no third trial is queued.
    assert fail_for_rerun(study, study.trials[1], LOST)
    trials = study.trials
    assert len(trials) == 2
    assert trials[1].user_attrs[FAIL_REASON_ATTR].startswith("lost 2 times")
    assert n_spent(trials) == 1
    # An interrupted trial is always re-run: Ctrl-C is no fault of the trial.
    interrupted = frozen(study, start_trial_with_history(study))
    assert fail_for_rerun(study, interrupted, INTERRUPTED)
    assert len(reruns_of(study, interrupted.number)) == 1


def test_a_finished_trial_is_left_alone(url, study_name):
    study = open_study(url, study_name)
    done = start_trial_with_history(study)
    study.tell(done, 0.9)
    done = frozen(study, done)
    # Ending a COMPLETE trial for a re-run does nothing: False, no reason, no re-run.
    assert not fail_for_rerun(study, done, INTERRUPTED)
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"]
    assert FAIL_REASON_ATTR not in trials[0].user_attrs
