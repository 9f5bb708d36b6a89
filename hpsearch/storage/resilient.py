"""RDBStorage that rides out a database outage without ever repeating a write that already landed.

A connection can break after the server committed a write but before the acknowledgement came back.
Reads, and writes that set a value (user and system attributes, parameters, intermediate values,
heartbeats), are safe to send again: retry.py retries them blindly. Three writes are not, since
sending them again would add a second row or fail on the first one's result:

- creating a trial (a duplicate trial) and creating a study (DuplicatedStudyError on our own study),
- setting a trial's state (UpdateFinishedTrialError on the trial we just finished, or a second
  re-run of a stale trial that another worker also failed).

Each of these writes a random token in the same transaction; a retry first looks for its token,
under the same row lock the write takes (so it waits for a commit still in flight), and only
re-does the write when the token is not there.

A study's start numbers (take_start_number) are handed out the same way: each is a study system
attribute row `hpsearch:start:N` holding the token of the call that took it; the unique
(study_id, key) of that table makes sure no number is handed out twice, and a retry that finds its
token returns the number it had taken.

Creating a trial is also where the study-wide budget is fenced: once told the budget
(`refuse_trials_beyond`), the storage counts the trials that hold a slot in the transaction that
creates a new RUNNING trial, and refuses it (BudgetFull) when none is free. No worker, however long
it stalled while it believed it held the study lock, can start a trial beyond the budget.

Finishing a trial also settles its pending best model in the same transaction (best_model.py).

A FAIL of a trial registered for a re-run (interrupted, or found stale) also queues its re-run in
the same transaction (rerun.py): whoever fails it second adds nothing. One lost too often is not
re-run, and the same transaction gives its checkpoints up (checkpoint.py); each stale-trial check
removes what such a transaction listed and a dead process left.

Also three savings for the worker loop: a trial count in one query, a trial's record in one commit,
and Optuna's stale-trial check (run before every trial) done at most once per heartbeat interval.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import time
import uuid
from dataclasses import dataclass

from hpsearch.errors import BudgetFull
from hpsearch.storage.optuna_private import (
    CALLED_BY_OPTUNAS_CACHE,
    rdb_models,
    rdb_storage_with_hooks,
    session_scope,
    set_trial_id,
)
from hpsearch.storage.rerun import LOST, fail_with_rerun_without_commit
from hpsearch.storage.retry import retry_checked, retry_through_outage

TRIAL_TOKEN_ATTR = "hpsearch:created"  # trial system attribute: the token of the write that made it
STATE_TOKEN_ATTR = "hpsearch:state_set"  # trial system attribute: the token of its last state write
STUDY_TOKEN_ATTR = "hpsearch:created"  # study system attribute, likewise
START_ATTR_PREFIX = "hpsearch:start:"  # study system attributes :0, :1 ...: the token that took it
# Attempts at a start number that another process took in the same moment (SQLite, where no row
# lock queues the takers; the unique (study_id, key) refuses the second).
START_NUMBER_ATTEMPTS = 20
# Calls that must not be repeated blindly: each has a checked version below (or, for delete_study,
# a repeat only finds the study gone).
NOT_BLINDLY_RETRIED = frozenset({"create_new_study", "create_new_trial", "set_trial_state_values"})


@dataclass(frozen=True)
class SlotRule:
    """A study's budget as the storage enforces it: at most `n_slots` trials hold a slot. A trial
    holds one while COMPLETE, PRUNED, RUNNING or WAITING, or FAIL with a user attribute
    `fail_reason_attr` that is set and not one of `uncounted_reasons` (hpsearch.study.budget)."""

    n_slots: int
    fail_reason_attr: str
    uncounted_reasons: tuple[str, ...]


@functools.cache
def resilient_storage_class():
    from optuna.exceptions import DuplicatedStudyError
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, TrialState
    from sqlalchemy import and_, exists, func, or_
    from sqlalchemy.exc import IntegrityError

    # Here, not at the top: best_model imports the artifact store, which imports queries, which
    # imports this module.
    from hpsearch.storage.best_model import settle_pending_model
    from hpsearch.storage.checkpoint import abandon_without_commit, remove_abandoned

    remove_abandoned_checkpoints = retry_through_outage(remove_abandoned)  # safe to repeat

    models = rdb_models()
    hooked = rdb_storage_with_hooks()

    slot_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    names = [
        n for n in vars(BaseStorage) if not n.startswith("_") and callable(getattr(BaseStorage, n))
    ]
    # The heartbeat, the stale-trial sweep and Optuna's caching layer call these directly.
    names += ["record_heartbeat", "stale_trial_ids", *CALLED_BY_OPTUNAS_CACHE]
    methods = {
        name: retry_through_outage(getattr(hooked, name))
        for name in names
        if hasattr(hooked, name) and name not in NOT_BLINDLY_RETRIED
    }
    retrying_storage = type("RetryingRDBStorage", (hooked,), methods)

    def token_row(session, model, owner_column, owner_id: int, key: str, token: str):
        return (
            session.query(model)
            .filter(
                owner_column == owner_id, model.key == key, model.value_json == json.dumps(token)
            )
            .one_or_none()
        )

    class ResilientRDBStorage(retrying_storage):
        def __init__(self, *args, **kwargs):
            self._stale_checked: dict[int, float] = {}
            self._slot_rules: dict[int, SlotRule] = {}
            self._reruns: dict[int, str] = {}  # trial id -> why, for its next FAIL (rerun.py)
            self.max_lost_reruns: int | None = None  # heartbeat.max_retries, set with the spec's
            super().__init__(*args, **kwargs)

        def refuse_trials_beyond(self, study_id: int, rule: SlotRule) -> None:
            """From now on, creating a RUNNING trial of the study raises BudgetFull when it would
            make more than `rule.n_slots` trials hold a slot. WAITING trials (queued re-runs) are
            still created: each takes the place of the trial it re-runs."""
            self._slot_rules[study_id] = rule

        def rerun_when_failed(self, trial_id: int, reason: str) -> None:
            """The next FAIL of this trial records `reason` and queues its re-run (rerun.py)."""
            self._reruns[trial_id] = reason

        def create_new_study(self, directions, study_name: str | None = None) -> int:
            if study_name is None:
                return super().create_new_study(
                    directions, study_name
                )  # a fresh unique name: no clash
            return self.create_study_with_user_attrs(study_name, directions, {})

        def create_study_with_user_attrs(
            self, study_name: str, directions, user_attrs: dict
        ) -> int:
            """A new study and its user attributes in one transaction: none sees it without them."""
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

        def create_trial_row(
            self, study_id: int, template_trial: FrozenTrial | None = None
        ) -> FrozenTrial:
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
                            self._refuse_beyond_budget(session, study_id)
                    frozen = copy.deepcopy(template)
                    frozen.number, frozen.datetime_start = trial.number, trial.datetime_start
                    set_trial_id(frozen, trial.trial_id)
                    return frozen

            return retry_checked(attempt)

        def _refuse_beyond_budget(self, session, study_id: int) -> None:
            """BudgetFull if the trial just added in `session` holds a slot beyond the budget.

            Counted in the creating transaction, after its INSERT: on PostgreSQL and MySQL the
            study's row lock (FOR UPDATE) serializes the creations of trials, and on SQLite the
            INSERT took the database's write lock; no other creation lands between this count and
            the commit, and the refused trial is rolled back with the transaction. A retry after a
            lost connection that does not find its trial counts again.
            """
            rule = self._slot_rules.get(study_id)
            if rule is None:
                return
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

        def set_trial_state_values(self, trial_id: int, state: TrialState, values=None) -> bool:
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

        def take_start_number(self, study_id: int) -> int:
            """The study's next start number, 0 first: each handed out once, to whichever of any
            number of processes on any backend asks, and once only through a lost answer."""
            token = json.dumps(uuid.uuid4().hex)
            attr = models.StudySystemAttributeModel

            def attempt(_first: bool) -> int:
                with session_scope(self) as session:
                    # The study's row lock queues the takers on a server, and makes a retry wait
                    # for an earlier attempt whose commit is still in flight.
                    models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
                    taken = {
                        int(key.removeprefix(START_ATTR_PREFIX)): value
                        for key, value in session.query(attr.key, attr.value_json).filter(
                            attr.study_id == study_id, attr.key.like(f"{START_ATTR_PREFIX}%")
                        )
                    }
                    mine = [number for number, value in taken.items() if value == token]
                    if mine:
                        return mine[0]  # an earlier attempt landed; only its answer was lost
                    number = max(taken, default=-1) + 1
                    key = f"{START_ATTR_PREFIX}{number}"
                    session.add(attr(study_id=study_id, key=key, value_json=token))
                    return number

            for _ in range(START_NUMBER_ATTEMPTS - 1):
                try:
                    return retry_checked(attempt)
                except IntegrityError:
                    time.sleep(0.01)  # another process took that number: the next is free
            return retry_checked(attempt)

        @retry_through_outage
        def count_trials(self, study_id: int) -> int:
            """Every trial of the study, whatever its state: one COUNT, not a read of them all."""
            from sqlalchemy import func

            with session_scope(self) as session:
                return (
                    session.query(func.count(models.TrialModel.trial_id))
                    .filter(models.TrialModel.study_id == study_id)
                    .scalar()
                )

        @retry_through_outage
        def set_trial_user_attrs(self, trial_id: int, attrs: dict) -> None:
            with session_scope(self, True) as session:
                for key, value in attrs.items():
                    self.set_trial_attr_in(
                        session, models.TrialUserAttributeModel, trial_id, key, value
                    )

        def stale_trial_ids(self, study_id: int) -> list[int]:
            # A trial goes stale only after a grace period without heartbeats; looking again
            # sooner than one heartbeat interval later finds nothing new, and costs two queries.
            now = time.monotonic()
            if now - self._stale_checked.get(study_id, float("-inf")) < (
                self.heartbeat_interval or 0
            ):
                return []
            self._stale_checked[study_id] = now
            remove_abandoned_checkpoints(self, study_id)  # those a sweeper that died left
            stale = super().stale_trial_ids(study_id)
            # Optuna's fail_stale_trials FAILs each next: that FAIL re-runs it, in one transaction.
            for trial_id in stale:
                self.rerun_when_failed(trial_id, LOST)
            return stale

    return ResilientRDBStorage
