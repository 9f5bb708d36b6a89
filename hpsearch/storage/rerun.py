"""A lost or interrupted trial's end and its re-run, in one transaction: one re-run per trial.

A trial whose process stops before it can end it (Ctrl-C, SIGTERM, a group's SIGTERM) or that is
lost (its heartbeat went silent: SIGKILL, a lost machine, SIGSTOP past the grace period) is re-run
with its parameters and seed. Several parties may end it: the process's own interrupt handler,
its group's launcher, and any worker's stale-trial sweep, in any order (a process stopped past the
grace period is swept, then wakes up and is interrupted). Whoever comes first moves the trial from
RUNNING to FAIL with its reason and queues its WAITING re-run in the same transaction, under the
trial's row lock and a conditional UPDATE (which serializes on SQLite too, where FOR UPDATE is
ignored); whoever comes second finds it ended and adds nothing. So a lost trial is re-run once, and
counted once toward the budget (by its re-run; study/budget.py counts neither reason).

The re-run starts clean: its parameters (fixed as Optuna's enqueue_trial fixes them) and user
attributes exactly `seed` and `rerun_of`. The dead trial's pruner rungs, group, host, metrics and
intermediate values are its own history, not the re-run's.

How it is reached: a process registers "re-run when failed, for this reason" for a trial
(`rerun_when_failed`), and the storage's next FAIL of that trial (Optuna's own tell after the
KeyboardInterrupt, or its fail_stale_trials after the storage's stale check registered the trial as
lost) performs it inside its transaction (checked_writes.py). `fail_for_rerun` does both at once.
A trial lost more than `heartbeat.max_retries` times along its `rerun_of` chain is not re-run: it
ends with a reason that counts toward the budget, as any failure that is data.
"""

from __future__ import annotations

import json
from typing import Any

from hpsearch.storage.optuna_private import backend_of, rdb_models, storage_of, trial_id_of

FAIL_REASON_ATTR = "fail_reason"  # trial user attribute: why it ended FAIL
INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM; re-run
LOST = "lost"  # its heartbeat went silent (worker killed, machine lost, process stopped); re-run
RERUN_REASONS = frozenset({INTERRUPTED, LOST})  # the dead trial does not count; its re-run does
SEED_ATTR = "seed"
RERUN_OF_ATTR = "rerun_of"
FIXED_PARAMS_ATTR = "fixed_params"  # Optuna's system attribute for an enqueued trial's parameters


def rerun_when_failed(trial, reason: str) -> None:
    """Have the storage re-run this running trial (an optuna.Trial) when it is next failed."""
    backend_of(trial.study).rerun_when_failed(trial_id_of(trial), reason)


def fail_for_rerun(study, trial, reason: str) -> bool:
    """End a RUNNING trial (a FrozenTrial) FAIL with `reason` and queue its re-run, in one
    transaction. False, and nothing written, when it had ended already."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    backend_of(study).rerun_when_failed(trial_id_of(trial), reason)
    try:
        return storage_of(study).set_trial_state_values(trial_id_of(trial), TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False


def fail_with_rerun_without_commit(
    storage, session, trial, reason: str, max_lost: int | None
) -> int | None:
    """In the caller's transaction: move `trial` (a TrialModel, row locked) from RUNNING to FAIL
    with `reason`, and add its WAITING re-run; the re-run's trial id, or None when it is not re-run
    (lost more than `max_lost` times). Raises UpdateFinishedTrialError, writing nothing, when the
    trial is no longer RUNNING: someone else ended it first."""
    import sqlalchemy
    from optuna.exceptions import UpdateFinishedTrialError

    models = rdb_models()
    from optuna.trial import TrialState

    table = models.TrialModel.__table__
    claimed = session.execute(
        sqlalchemy.update(table)
        .where(table.c.trial_id == trial.trial_id, table.c.state == TrialState.RUNNING)
        .values(state=TrialState.FAIL)
    ).rowcount
    if claimed != 1:
        raise UpdateFinishedTrialError(f"trial {trial.number} has ended already; not re-run")

    user_attrs = _user_attrs(session, models, trial.trial_id)
    rerun_attrs = {RERUN_OF_ATTR: trial.number}
    if SEED_ATTR in user_attrs:
        rerun_attrs[SEED_ATTR] = user_attrs[SEED_ATTR]
    n_lost = (reason == LOST) + _lost_before(session, models, trial.study_id, user_attrs)
    if reason == LOST and max_lost is not None and n_lost > max_lost:
        reason = f"lost {n_lost} times (heartbeat.max_retries is {max_lost}); not re-run"
        rerun_attrs = None
    storage.set_trial_attr_in(
        session, models.TrialUserAttributeModel, trial.trial_id, FAIL_REASON_ATTR, reason
    )
    if rerun_attrs is None:
        return None
    # The study's row lock serializes trial numbering, as in creating any trial (checked_writes.py).
    models.StudyModel.find_or_raise_by_id(trial.study_id, session, for_update=True)
    template = waiting_trial(rerun_attrs, _params(trial))
    return storage.prepare_trial_row(trial.study_id, template, session).trial_id


def waiting_trial(user_attrs: dict[str, Any], params: dict[str, Any]):
    """A WAITING trial (a FrozenTrial to insert) that will run with `params`, as
    study.enqueue_trial makes one: the re-run of a lost trial, a warm start's configuration."""
    from optuna.trial import FrozenTrial, TrialState

    return FrozenTrial(
        number=-1,
        state=TrialState.WAITING,
        value=None,
        datetime_start=None,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs=dict(user_attrs),
        system_attrs={FIXED_PARAMS_ATTR: dict(params)},
        intermediate_values={},
        trial_id=-1,
    )


def _params(trial) -> dict[str, Any]:
    """The trial's parameters as the user sees them (what enqueue_trial fixes)."""
    from optuna.distributions import json_to_distribution

    return {
        p.param_name: json_to_distribution(p.distribution_json).to_external_repr(p.param_value)
        for p in trial.params
    }


def _user_attrs(session, models, trial_id: int) -> dict[str, Any]:
    rows = session.query(models.TrialUserAttributeModel).filter(
        models.TrialUserAttributeModel.trial_id == trial_id
    )
    return {row.key: json.loads(row.value_json) for row in rows}


def _lost_before(session, models, study_id: int, user_attrs: dict[str, Any]) -> int:
    """How many of the trials this one re-runs (its `rerun_of` chain) were lost."""
    n_lost, seen = 0, set()
    while (number := user_attrs.get(RERUN_OF_ATTR)) is not None and number not in seen:
        seen.add(number)
        parent = (
            session.query(models.TrialModel)
            .filter(models.TrialModel.study_id == study_id, models.TrialModel.number == number)
            .one_or_none()
        )
        if parent is None:
            break
        user_attrs = _user_attrs(session, models, parent.trial_id)
        n_lost += user_attrs.get(FAIL_REASON_ATTR) == LOST
    return n_lost
