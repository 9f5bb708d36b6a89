"""What hpsearch reads and writes of a study beyond Optuna's public API: its trial count, its start
numbers, its budget's fence, several attributes in one write, the heartbeats' ages, the trials of a
broken group failed. The rest of hpsearch calls these; they reach Optuna's private API only through
optuna_private.py.
"""

from __future__ import annotations

import os
import time
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from hpsearch.storage.budget_fence import SlotRule
from hpsearch.storage.optuna_private import (
    backend_of,
    rdb_models,
    storage_of,
    study_id_of,
    trial_id_of,
)


def create_study(
    storage, name: str, direction: str | list[str], user_attrs: dict[str, Any]
) -> None:
    """A new study with its user attributes, in one transaction where the storage can do that;
    a list of directions makes a multi-objective study.

    Raises optuna's DuplicatedStudyError when a study of that name exists.
    """
    named = [direction] if isinstance(direction, str) else direction
    directions = [
        StudyDirection.MAXIMIZE if d == "maximize" else StudyDirection.MINIMIZE for d in named
    ]
    if hasattr(storage, "create_study_with_user_attrs"):
        storage.create_study_with_user_attrs(name, directions, user_attrs)
        return
    study_id = storage.create_new_study(directions, name)
    for key, value in user_attrs.items():
        storage.set_study_user_attr(study_id, key, value)


def count_trials(study: optuna.Study) -> int:
    """How many trials the study has, in any state, as cheaply as the storage can say."""
    backend = backend_of(study)
    if hasattr(backend, "count_trials"):
        return backend.count_trials(study_id_of(study))
    return len(study.get_trials(deepcopy=False))


def take_start_number(study: optuna.Study) -> int:
    """The study's next start number (0, 1, 2 ...), never handed out twice (see start_number.py)."""
    from hpsearch.storage.start_number import START_ATTR_PREFIX

    backend = backend_of(study)
    if hasattr(backend, "take_start_number"):
        return backend.take_start_number(study_id_of(study))
    # Another storage (in memory): one process holds it, so the next number is the count so far.
    attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    number = sum(key.startswith(START_ATTR_PREFIX) for key in attrs)
    storage_of(study).set_study_system_attr(study_id_of(study), f"{START_ATTR_PREFIX}{number}", "")
    return number


def refuse_trials_beyond(
    study: optuna.Study,
    n_slots: int,
    *,
    fail_reason_attr: str,
    uncounted_reasons: tuple[str, ...],
) -> None:
    """From now on this process's storage refuses, with BudgetFull, to create a RUNNING trial of
    `study` that would make more than `n_slots` trials hold a slot, in the transaction that creates
    it (see SlotRule for which trials hold one). On a storage other than hpsearch's RDB storage
    nothing changes: only the study lock guards the budget there."""
    backend = backend_of(study)
    if hasattr(backend, "refuse_trials_beyond"):
        rule = SlotRule(n_slots, fail_reason_attr, tuple(uncounted_reasons))
        backend.refuse_trials_beyond(study_id_of(study), rule)


def set_user_attrs(trial: optuna.Trial, attrs: dict) -> None:
    """Several user attributes of a running trial in one transaction where the storage can do it."""
    backend = backend_of(trial.study)
    if hasattr(backend, "set_trial_user_attrs"):
        backend.set_trial_user_attrs(trial_id_of(trial), attrs)
        return
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def study_system_attrs(study: optuna.Study) -> dict[str, Any]:
    return storage_of(study).get_study_system_attrs(study_id_of(study))


def set_study_system_attr(study: optuna.Study, key: str, value: Any) -> None:
    """System attributes hold what the dashboard keeps out of the user's view (artifact metadata,
    the workers that joined)."""
    storage_of(study).set_study_system_attr(study_id_of(study), key, value)


def fresh_user_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's user attributes as the database holds them now (never a cached copy)."""
    return backend_of(study).get_study_user_attrs(study_id_of(study))


def trials_of(storage, study: optuna.study.FrozenStudy) -> list[FrozenTrial]:
    return storage.get_all_trials(study_id_of(study), deepcopy=False)


def heartbeat_ages(storage, trials: list[FrozenTrial]) -> dict[int, float]:
    """Seconds since each running trial's last heartbeat, by trial number, on the database's clock
    (the one that wrote the heartbeats)."""
    ids = {trial_id_of(t): t.number for t in trials}
    if not ids or not hasattr(storage, "scoped_session"):
        return {}
    import sqlalchemy

    TrialHeartbeatModel = rdb_models().TrialHeartbeatModel

    session = storage.scoped_session()
    try:
        now = session.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
        rows = session.execute(
            sqlalchemy.select(TrialHeartbeatModel.trial_id, TrialHeartbeatModel.heartbeat).where(
                TrialHeartbeatModel.trial_id.in_(list(ids))
            )
        ).all()
    finally:
        session.close()
    return {ids[trial_id]: round((now - beat).total_seconds(), 1) for trial_id, beat in rows}


def fail_running_trials(
    study: optuna.Study, attr: str, value: Any, reasons: dict[str, Any]
) -> list[int]:
    """Fail the study's RUNNING trials whose user attribute `attr` is `value`, recording `reasons`
    (user attributes) first: trials whose processes can no longer end them themselves (a rank of a
    multi-process trial died). Returns their numbers; a trial that ended meanwhile is left alone."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    failed = []
    storage = storage_of(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(attr) != value:
            continue
        try:
            for key, reason in reasons.items():
                storage.set_trial_user_attr(trial_id_of(trial), key, reason)
            storage.set_trial_state_values(trial_id_of(trial), TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # it finished, or the stale-trial check failed it, a moment ago
        failed.append(trial.number)
    return failed


SETTLE_DELAY_ENV = "HPSEARCH_TEST_SETTLE_DELAY"  # tests: widen the window between read and write


def lock_study_attr(session, study_id: int, key: str) -> tuple[Any, Any, Any]:
    """In a transaction that settles a kept model: the study's row and its user attribute `key`
    locked, so workers completing at once settle one after another; (the study row, the
    attribute's row or None, its value or None)."""
    import json

    models = rdb_models()
    study = (
        session.query(models.StudyModel)
        .filter(models.StudyModel.study_id == study_id)
        .with_for_update()
        .one()
    )
    user_attrs = models.StudyUserAttributeModel
    # Locking reads: MySQL's plain reads see the transaction's snapshot, not the last commits.
    row = (
        session.query(user_attrs)
        .filter(user_attrs.study_id == study.study_id, user_attrs.key == key)
        .with_for_update()
        .one_or_none()
    )
    if os.environ.get(SETTLE_DELAY_ENV):
        time.sleep(float(os.environ[SETTLE_DELAY_ENV]))
    return study, row, None if row is None else json.loads(row.value_json)
