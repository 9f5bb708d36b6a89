"""Trials queued once per study, whoever asks and however often: a guard attribute and the queued
trials written in one transaction.

Two `hpsearch run` processes that start at once both want to queue a warm start's configurations;
each would find none queued yet and queue them, and the study would try each twice. So the check
and the write are one transaction that first writes the study's row (the lock, as in record.py: the
row on PostgreSQL and MySQL, the database on SQLite), then reads the guard, a study system
attribute, and adds the WAITING trials and the guard together. The second process reads the guard
and adds nothing; a retry after a lost connection does the same when the first attempt landed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import optuna

from hpsearch.storage.optuna_private import backend_of, rdb_models, session_scope, study_id_of
from hpsearch.storage.rerun import waiting_trial
from hpsearch.storage.retry import retry_checked


@dataclass(frozen=True)
class QueuedTrial:
    params: dict[str, Any]
    """The parameters fixed for the trial, as the user sees them (what enqueue_trial takes)."""
    user_attrs: dict[str, Any] = field(default_factory=dict)


def enqueue_once(
    study: optuna.Study, guard: str, trials: list[QueuedTrial], n_slots: int
) -> list[int] | None:
    """Queue `trials` (as WAITING trials, in order) unless the study system attribute `guard` is
    set, and set it, in one transaction. At most as many as leave the study with `n_slots` trials
    or fewer (the budget: a queued trial holds a slot). Returns the numbers of the trials queued,
    or None when the guard was set already (by this call's earlier attempt or another process)."""
    backend = backend_of(study)
    study_id = study_id_of(study)
    if not hasattr(backend, "scoped_session"):  # an in-memory storage: one process holds it
        if guard in backend.get_study_system_attrs(study_id):
            return None
        free = max(0, n_slots - len(study.get_trials(deepcopy=False)))
        numbers = []
        for queued in trials[:free]:
            study.enqueue_trial(queued.params, user_attrs=queued.user_attrs)
            numbers.append(study.get_trials(deepcopy=False)[-1].number)
        backend.set_study_system_attr(study_id, guard, numbers)
        return numbers
    models = rdb_models()

    def attempt(_first: bool) -> list[int] | None:

        with session_scope(backend) as session:
            # The write that locks: the study's row (a server) or the database (SQLite).
            session.query(models.StudyModel).filter(models.StudyModel.study_id == study_id).update(
                {models.StudyModel.study_name: models.StudyModel.study_name},
                synchronize_session=False,
            )
            system = models.StudySystemAttributeModel
            found = (
                session.query(system)
                .filter(system.study_id == study_id, system.key == guard)
                .one_or_none()
            )
            if found is not None:
                return None
            n_trials = (
                session.query(models.TrialModel)
                .filter(models.TrialModel.study_id == study_id)
                .count()
            )
            numbers = []
            for queued in trials[: max(0, n_slots - n_trials)]:
                template = waiting_trial(queued.user_attrs, queued.params)
                numbers.append(backend.prepare_trial_row(study_id, template, session).number)
            session.add(system(study_id=study_id, key=guard, value_json=json.dumps(numbers)))
            return numbers

    return retry_checked(attempt)
