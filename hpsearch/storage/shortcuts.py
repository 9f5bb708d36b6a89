"""Three savings for the worker loop: a trial count in one query, a trial's user attributes in one
commit, and Optuna's stale-trial check (run before every trial) done at most once per heartbeat
interval."""

from __future__ import annotations

import time

from hpsearch.storage.checkpoint import remove_abandoned
from hpsearch.storage.optuna_private import rdb_models, session_scope
from hpsearch.storage.rerun import LOST
from hpsearch.storage.retry import retry_through_outage

remove_abandoned_checkpoints = retry_through_outage(remove_abandoned)  # safe to repeat


class Shortcuts:
    def __init__(self, *args, **kwargs):
        self._stale_checked: dict[int, float] = {}
        super().__init__(*args, **kwargs)

    @retry_through_outage
    def count_trials(self, study_id: int) -> int:
        """Every trial of the study, whatever its state: one COUNT, not a read of them all."""
        from sqlalchemy import func

        models = rdb_models()
        with session_scope(self) as session:
            return (
                session.query(func.count(models.TrialModel.trial_id))
                .filter(models.TrialModel.study_id == study_id)
                .scalar()
            )

    @retry_through_outage
    def set_trial_user_attrs(self, trial_id: int, attrs: dict) -> None:
        models = rdb_models()
        with session_scope(self, True) as session:
            for key, value in attrs.items():
                self.set_trial_attr_in(
                    session, models.TrialUserAttributeModel, trial_id, key, value
                )

    def stale_trial_ids(self, study_id: int) -> list[int]:
        # A trial goes stale only after a grace period without heartbeats; looking again
        # sooner than one heartbeat interval later finds nothing new, and costs two queries.
        now = time.monotonic()
        if now - self._stale_checked.get(study_id, float("-inf")) < (self.heartbeat_interval or 0):
            return []
        self._stale_checked[study_id] = now
        remove_abandoned_checkpoints(self, study_id)  # those a sweeper that died left
        stale = super().stale_trial_ids(study_id)
        # Optuna's fail_stale_trials FAILs each next: that FAIL re-runs it, in one transaction.
        for trial_id in stale:
            self.rerun_when_failed(trial_id, LOST)
        return stale
