"""The writes that must not be sent twice, made safe to retry: each checks for its own token first.

A connection can break after the server committed a write but before the acknowledgement came
back. Three writes cannot then simply be sent again, since that would add a second row or fail on
the first one's result:

- creating a trial (a duplicate trial) and creating a study (DuplicatedStudyError on our own study),
- setting a trial's state (UpdateFinishedTrialError on the trial we just finished, or a second
  re-run of a stale trial that another worker also failed).

Each of these writes a random token in the same transaction; a retry first looks for its token,
under the same row lock the write takes (so it waits for a commit still in flight), and only
re-does the write when the token is not there.

Creating a RUNNING trial is also where the budget is fenced (budget_fence.py). Finishing a trial
also settles its pending best model in the same transaction (best_model.py); a FAIL of a trial
registered for a re-run (interrupted, or found stale) queues its re-run in the same transaction
(rerun.py): whoever fails it second adds nothing. One lost too often is not re-run, and the same
transaction gives its checkpoints up (checkpoint.py).
"""

from __future__ import annotations

import copy
import datetime
import json
import uuid

from hpsearch.storage.best_model import settle_pending_model
from hpsearch.storage.checkpoint import abandon_without_commit
from hpsearch.storage.optuna_private import rdb_models, session_scope, set_trial_id
from hpsearch.storage.rerun import fail_with_rerun_without_commit
from hpsearch.storage.retry import retry_checked

TRIAL_TOKEN_ATTR = "hpsearch:created"  # trial system attribute: the token of the write that made it
STATE_TOKEN_ATTR = "hpsearch:state_set"  # trial system attribute: the token of its last state write
STUDY_TOKEN_ATTR = "hpsearch:created"  # study system attribute, likewise


def token_row(session, model, owner_column, owner_id: int, key: str, token: str):
    return (
        session.query(model)
        .filter(owner_column == owner_id, model.key == key, model.value_json == json.dumps(token))
        .one_or_none()
    )


class CheckedWrites:
    """Creating a study or a trial and setting a trial's state, each retried only after a check."""

    def __init__(self, *args, **kwargs):
        self._reruns: dict[int, str] = {}  # trial id -> why, for its next FAIL (rerun.py)
        self.max_lost_reruns: int | None = None  # heartbeat.max_retries, set with the spec's
        super().__init__(*args, **kwargs)

    def rerun_when_failed(self, trial_id: int, reason: str) -> None:
        """The next FAIL of this trial records `reason` and queues its re-run (rerun.py)."""
        self._reruns[trial_id] = reason

    def create_new_study(self, directions, study_name: str | None = None) -> int:
        if study_name is None:
            return super().create_new_study(directions, study_name)  # a fresh unique name: no clash
        return self.create_study_with_user_attrs(study_name, directions, {})

    def create_study_with_user_attrs(self, study_name: str, directions, user_attrs: dict) -> int:
        """A new study and its user attributes in one transaction: none sees it without them."""
        from optuna.exceptions import DuplicatedStudyError
        from sqlalchemy.exc import IntegrityError

        models = rdb_models()
        token = uuid.uuid4().hex

        def attempt(first: bool) -> int:
            with session_scope(self) as session:
                if not first:
                    existing = models.StudyModel.find_by_name(study_name, session)
                    if existing is not None:
                        mine = token_row(
                            session,
                            models.StudySystemAttributeModel,
                            models.StudySystemAttributeModel.study_id,
                            existing.study_id,
                            STUDY_TOKEN_ATTR,
                            token,
                        )
                        if mine is not None:
                            return existing.study_id
                        raise DuplicatedStudyError(f"study {study_name!r} already exists")
                study = models.StudyModel(
                    study_name=study_name,
                    directions=[
                        models.StudyDirectionModel(objective=k, direction=d)
                        for k, d in enumerate(directions)
                    ],
                )
                session.add(study)
                session.flush()
                attrs = [(models.StudyUserAttributeModel, k, v) for k, v in user_attrs.items()]
                attrs.append((models.StudySystemAttributeModel, STUDY_TOKEN_ATTR, token))
                for model, key, value in attrs:
                    session.add(
                        model(study_id=study.study_id, key=key, value_json=json.dumps(value))
                    )
                return study.study_id

        try:
            return retry_checked(attempt)
        except IntegrityError:
            raise DuplicatedStudyError(f"study {study_name!r} already exists") from None

    def create_trial_row(self, study_id: int, template_trial=None):
        from optuna.trial import FrozenTrial, TrialState

        models = rdb_models()
        token = uuid.uuid4().hex
        template = (
            copy.deepcopy(template_trial)
            if template_trial is not None
            else FrozenTrial(
                number=-1,
                state=TrialState.RUNNING,
                value=None,
                datetime_start=datetime.datetime.now(),
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=-1,
            )
        )
        template.system_attrs[TRIAL_TOKEN_ATTR] = token

        def attempt(first: bool) -> FrozenTrial:
            with session_scope(self) as session:
                # The study's row lock serializes trial numbering, and makes a retry wait for an
                # earlier attempt whose commit is still in flight.
                models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
                trial = None
                if not first:
                    trial = (
                        session.query(models.TrialModel)
                        .join(models.TrialSystemAttributeModel)
                        .filter(
                            models.TrialModel.study_id == study_id,
                            models.TrialSystemAttributeModel.key == TRIAL_TOKEN_ATTR,
                            models.TrialSystemAttributeModel.value_json == json.dumps(token),
                        )
                        .one_or_none()
                    )
                if trial is None:
                    trial = self.prepare_trial_row(study_id, template, session)
                    if template.state == TrialState.RUNNING:
                        self.refuse_beyond_budget(session, study_id)
                frozen = copy.deepcopy(template)
                frozen.number, frozen.datetime_start = trial.number, trial.datetime_start
                set_trial_id(frozen, trial.trial_id)
                return frozen

        return retry_checked(attempt)

    def set_trial_state_values(self, trial_id: int, state, values=None) -> bool:
        from optuna.trial import TrialState
        from sqlalchemy.exc import IntegrityError

        models = rdb_models()
        token = uuid.uuid4().hex
        rerun_reason = self._reruns.pop(trial_id, None)

        def attempt(first: bool) -> bool:
            try:
                with session_scope(self) as session:
                    trial = models.TrialModel.find_or_raise_by_id(
                        trial_id, session, for_update=True
                    )
                    if (
                        not first
                        and token_row(
                            session,
                            models.TrialSystemAttributeModel,
                            models.TrialSystemAttributeModel.trial_id,
                            trial_id,
                            STATE_TOKEN_ATTR,
                            token,
                        )
                        is not None
                    ):
                        return True  # the earlier attempt landed; only its answer was lost
                    # As RDBStorage.set_trial_state_values, plus the token.
                    self.check_trial_is_updatable(trial_id, trial.state)
                    if state == TrialState.FAIL and rerun_reason is not None:
                        rerun = fail_with_rerun_without_commit(
                            self, session, trial, rerun_reason, self.max_lost_reruns
                        )
                        if rerun is None:  # lost too often: nobody resumes its checkpoint
                            abandon_without_commit(self, session, trial)
                    if values is not None:
                        for objective, value in enumerate(values):
                            self.set_trial_value_in(session, trial, objective, value)
                    if state == TrialState.RUNNING and trial.state != TrialState.WAITING:
                        return False
                    self.set_trial_attr_in(
                        session,
                        models.TrialSystemAttributeModel,
                        trial_id,
                        STATE_TOKEN_ATTR,
                        token,
                    )
                    settle_pending_model(self, session, trial, state, values)
                    trial.state = state
                    if state == TrialState.RUNNING:
                        trial.datetime_start = datetime.datetime.now()
                    if state.is_finished():
                        trial.datetime_complete = datetime.datetime.now()
            except IntegrityError:
                return False
            return True

        return retry_checked(attempt)
