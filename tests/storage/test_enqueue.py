"""Trials queued once per guard on SQLite, PostgreSQL and MariaDB: a second call, or a process
racing the first, queues nothing; the budget caps what is queued."""

from __future__ import annotations

import uuid

import optuna

from hpsearch.storage import QueuedTrial, enqueue_once, open_storage, resolve_storage_url


def test_a_guarded_enqueue_happens_once_and_fits_the_budget(url):
    storage = open_storage(resolve_storage_url(url))
    name = f"enqueue-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(study_name=name, storage=storage)
    trials = [QueuedTrial({"x": float(i)}, {"origin": f"a#{i}"}) for i in range(3)]
    # A budget of 2 has room for two of the three.
    assert enqueue_once(study, "guard:a", trials, n_slots=2) == [0, 1]
    # The same guard again (another run, another process) queues nothing.
    assert enqueue_once(study, "guard:a", trials, n_slots=5) is None
    queued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs["origin"] for t in queued] == ["a#0", "a#1"]
    # The queued trials run with their parameters fixed.
    study.optimize(lambda t: t.suggest_float("x", 0, 10), n_trials=2)
    assert [t.params["x"] for t in study.trials] == [0.0, 1.0]
    # Another guard, with no room left in the budget, records itself and queues nothing.
    assert enqueue_once(study, "guard:b", trials, n_slots=2) == []
    # In memory (one process), the same rules.
    memory = optuna.create_study()
    assert enqueue_once(memory, "g", trials, n_slots=3) == [0, 1, 2]
    assert enqueue_once(memory, "g", trials, n_slots=3) is None
