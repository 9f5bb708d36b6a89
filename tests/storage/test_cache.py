"""The study's trial cache: `ask` finds waiting trials without re-reading every running one.

Optuna's own cache answers "which trials are WAITING?" by re-reading each unfinished trial in full;
hpsearch asks under the study lock, so with many workers that read was most of the lock's hold.
"""

from __future__ import annotations

import os

import optuna
import pytest
from optuna.storages._rdb import models

from hpsearch.spec import parse_spec
from hpsearch.storage import StudyCache, open_storage, resolve_storage_url
from hpsearch.study import open_study

N_RUNNING = 12


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return resolve_storage_url(f"sqlite:///{tmp_path / 'hp.db'}")
    if not os.environ.get("HPSEARCH_TEST_POSTGRES"):
        pytest.skip("HPSEARCH_TEST_POSTGRES is not set")
    return resolve_storage_url(os.environ["HPSEARCH_TEST_POSTGRES"])


def trials_loaded_by(action) -> list[int]:
    """The trials (ids) whose rows the ORM builds while `action` runs."""
    loaded = []

    def on_load(target, context):
        loaded.append(target.trial_id)

    from sqlalchemy import event

    event.listen(models.TrialModel, "load", on_load)
    try:
        action()
    finally:
        event.remove(models.TrialModel, "load", on_load)
    return loaded


def test_ask_pops_a_waiting_trial_without_reading_the_running_ones(url, tiny_spec, request):
    spec = parse_spec(tiny_spec, "t")
    name = f"cache-{request.node.callspec.id}-{os.getpid()}-{id(spec)}"
    storage = open_storage(url)
    study, _ = open_study(storage, name, spec)
    assert isinstance(study._storage, StudyCache)
    # Other workers' trials, running; the cache has seen them.
    running = [study.ask() for _ in range(N_RUNNING)]
    study.get_trials(deepcopy=False)
    # A re-run queued from elsewhere (another process's storage, as a worker would).
    other = optuna.load_study(study_name=name, storage=open_storage(url))
    other.enqueue_trial({"learning_rate": 1e-4}, skip_if_exists=False)
    popped = []
    loaded = trials_loaded_by(lambda: popped.append(study.ask()))
    # The waiting trial is the one asked for, now running here...
    assert popped[0].number == N_RUNNING
    assert (
        popped[0].suggest_float("learning_rate", 1e-5, 1e-3, log=True) == 1e-4
    )  # its queued value
    assert other.trials[N_RUNNING].state == optuna.trial.TrialState.RUNNING
    # ...found by reading it alone (to find it, to set it running, to start it), not the 12
    # running trials.
    assert set(loaded) == {popped[0]._trial_id}, f"ask loaded trials {loaded}"
    # With no waiting trial left, ask creates a new one; the cache still sees every trial.
    fresh = study.ask()
    assert fresh.number == N_RUNNING + 1
    assert len(study.get_trials(deepcopy=False)) == N_RUNNING + 2
    for trial in (*running, popped[0], fresh):
        study.tell(trial, 0.5)
    assert {t.state for t in other.get_trials()} == {optuna.trial.TrialState.COMPLETE}
    optuna.delete_study(study_name=name, storage=storage)


def test_without_it_ask_reads_every_running_trial(url, tiny_spec, request):
    """What the cache saves, shown on Optuna's own: the same ask reads all 12 running trials."""
    spec = parse_spec(tiny_spec, "t")
    name = f"nocache-{request.node.callspec.id}-{os.getpid()}-{id(spec)}"
    storage = open_storage(url)
    open_study(storage, name, spec)
    study = optuna.load_study(study_name=name, storage=storage)  # optuna's _CachedStorage
    assert not isinstance(study._storage, StudyCache)
    for _ in range(N_RUNNING):
        study.ask()
    study.get_trials(deepcopy=False)
    assert len(set(trials_loaded_by(study.ask))) >= N_RUNNING
    optuna.delete_study(study_name=name, storage=storage)
