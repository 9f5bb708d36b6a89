"""The study-wide budget, fenced where trials are created.

Once told the budget (`refuse_trials_beyond`), the storage counts the trials that hold a slot in
the transaction that creates a new RUNNING trial, and refuses it (BudgetFull) when none is free. No
worker, however long it stalled while it believed it held the study lock, can start a trial beyond
the budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hpsearch.errors import BudgetFull
from hpsearch.storage.optuna_private import rdb_models


@dataclass(frozen=True)
class SlotRule:
    """A study's budget as the storage enforces it: at most `n_slots` trials hold a slot. A trial
    holds one while COMPLETE, PRUNED, RUNNING or WAITING, or FAIL with a user attribute
    `fail_reason_attr` that is set and not one of `uncounted_reasons` (hpsearch.study.budget)."""

    n_slots: int
    fail_reason_attr: str
    uncounted_reasons: tuple[str, ...]


class BudgetFence:
    """The storage's part: the rule of each study told one, checked by the creation of a trial
    (checked_writes.py)."""

    def __init__(self, *args, **kwargs):
        self._slot_rules: dict[int, SlotRule] = {}
        super().__init__(*args, **kwargs)

    def refuse_trials_beyond(self, study_id: int, rule: SlotRule) -> None:
        """From now on, creating a RUNNING trial of the study raises BudgetFull when it would
        make more than `rule.n_slots` trials hold a slot. WAITING trials (queued re-runs) are
        still created: each takes the place of the trial it re-runs."""
        self._slot_rules[study_id] = rule

    def refuse_beyond_budget(self, session, study_id: int) -> None:
        """BudgetFull if the trial just added in `session` holds a slot beyond the budget.

        Counted in the creating transaction, after its INSERT: on PostgreSQL and MySQL the
        study's row lock (FOR UPDATE) serializes the creations of trials, and on SQLite the
        INSERT took the database's write lock; no other creation lands between this count and
        the commit, and the refused trial is rolled back with the transaction. A retry after a
        lost connection that does not find its trial counts again.
        """
        from optuna.trial import TrialState
        from sqlalchemy import and_, exists, func, or_

        rule = self._slot_rules.get(study_id)
        if rule is None:
            return
        models = rdb_models()
        slot_states = (
            TrialState.COMPLETE,
            TrialState.PRUNED,
            TrialState.RUNNING,
            TrialState.WAITING,
        )
        trials, attrs = models.TrialModel, models.TrialUserAttributeModel
        uncounted = [json.dumps(None), *(json.dumps(r) for r in rule.uncounted_reasons)]
        counted_failure = and_(
            trials.state == TrialState.FAIL,
            exists().where(
                attrs.trial_id == trials.trial_id,
                attrs.key == rule.fail_reason_attr,
                attrs.value_json.notin_(uncounted),
            ),
        )
        held = (
            session.query(func.count(trials.trial_id))
            .filter(
                trials.study_id == study_id,
                or_(trials.state.in_(slot_states), counted_failure),
            )
            .scalar()
        )
        if held > rule.n_slots:
            raise BudgetFull(
                f"no free slot in the budget of {rule.n_slots} trials: {held - 1} trials "
                "count toward it or are running or waiting"
            )
