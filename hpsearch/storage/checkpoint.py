"""A running trial's latest checkpoint in the artifact store, so that its re-run resumes there.

A trial's checkpoint is one artifact (an uncompressed tar of the directory Trainer saved: weights or
adapter, optimizer, scheduler, RNG states, trainer state with the callbacks' state) and a pointer to
it, the trial system attribute CHECKPOINT_ATTR. Each save writes a new artifact id, then moves the
pointer, then removes the previous artifact: the pointer only ever names a complete checkpoint, on
any artifact store (a shared filesystem, an object store), and at most one is kept per trial (two
for the moment of a save). The pointer also lists the artifacts that may exist besides the latest
(`pending`: the one being written, then the one being replaced), so that a process killed in the
middle of a save leaves nothing behind for good: whoever takes the checkpoint over removes them.

The re-run of a lost or interrupted trial (storage/rerun.py, linked by RERUN_OF_ATTR) takes the
checkpoint over: it reads the original's pointer, unpacks the checkpoint, copies the original's
reports up to it (intermediate values, and the pruner's rungs as they stood at the save) so the
pruner sees the history it would have seen, and points its own attribute at the artifact; its next
save replaces it. A trial that ends (COMPLETE, PRUNED, FAIL) discards its checkpoint; one that is
lost keeps it for its re-run. A trial ended by someone else (the stale-trial sweep, while its
worker was stopped) no longer takes writes: its worker then leaves the checkpoint alone, since the
re-run may own it.

A trial lost more than heartbeat.max_retries times is not re-run, so nobody takes its checkpoint
over: the transaction that fails it (`abandon_without_commit`, in the storage's FAIL) moves every
checkpoint its `rerun_of` chain points at into its pointer's `pending` and removes the files after
the commit. `pending` of a finished trial is garbage by definition (a save it did not finish, a
checkpoint nobody resumes), so each process's stale-trial sweep also removes what any finished
trial's pointer still lists there (`remove_abandoned`): a process killed between the commit and the
removal leaves nothing behind for good, and several sweepers at once only remove a file twice.
"""

from __future__ import annotations

import contextlib
import json
import tarfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from hpsearch.storage.artifacts import artifact_dir
from hpsearch.storage.best_model import remove_after_commit
from hpsearch.storage.model_upload import stream_into
from hpsearch.storage.optuna_private import (
    rdb_models,
    session_scope,
    storage_of,
    study_id_of,
    trial_id_of,
)
from hpsearch.storage.rerun import RERUN_OF_ATTR

CHECKPOINT_ATTR = "hpsearch:checkpoint"  # trial system attribute: its latest checkpoint, or null
ARTIFACT_PREFIX = "checkpoint-"  # every checkpoint artifact's id starts so
RUNG_ATTR_PREFIX = "completed_rung_"  # Optuna's successive halving (and hyperband) rung records


@dataclass(frozen=True)
class Checkpoint:
    """Where a checkpoint is and what it holds: the state after `evaluation` at `step`."""

    artifact_id: str
    step: int
    evaluation: int
    trial: int
    """The number of the trial whose training wrote it."""
    rungs: dict[str, float] = field(default_factory=dict)
    """The trial's pruner rungs at the save."""


class TrialCheckpoint:
    """The one checkpoint a running trial keeps (an optuna.Trial's), in `store`."""

    def __init__(self, trial, store):
        self.trial = trial
        self.store = store
        self.storage = storage_of(trial.study)
        self.trial_id = trial_id_of(trial)
        self.current: Checkpoint | None = None

    def take_over(self, destination: Path) -> Checkpoint | None:
        """For a re-run: the checkpoint of the trial it re-runs, unpacked into `destination`, with
        that trial's reports up to it copied here and the checkpoint now this trial's; None when
        this trial re-runs none, or the one it re-runs left none."""
        number = self.trial.user_attrs.get(RERUN_OF_ATTR)
        if number is None:
            return None
        original_id = self.storage.get_trial_id_from_study_id_trial_number(
            study_id_of(self.trial.study), number
        )
        original = self.storage.get_trial(original_id)
        pointer = original.system_attrs.get(CHECKPOINT_ATTR) or {}
        for artifact_id in pointer.get("pending", []):
            self._remove(artifact_id)  # a save its worker did not finish
        if not pointer.get("latest"):
            return None
        checkpoint = Checkpoint(**pointer["latest"])
        if not self._unpack(checkpoint.artifact_id, destination):
            return None
        for step, value in sorted(original.intermediate_values.items()):
            if step <= checkpoint.evaluation:
                self.storage.set_trial_intermediate_value(self.trial_id, step, value)
        for key, value in checkpoint.rungs.items():
            self.storage.set_trial_system_attr(self.trial_id, key, value)
        self._point_at(checkpoint)
        return checkpoint

    def keep(self, directory: Path, step: int, evaluation: int) -> int:
        """Make `directory` (a checkpoint Trainer saved) this trial's checkpoint, replacing the
        previous one; the size of its files. A trial ended meanwhile by someone else raises
        UpdateFinishedTrialError and keeps nothing."""
        artifact_id = f"{ARTIFACT_PREFIX}{uuid.uuid4().hex}.tar"
        previous = self.current
        self._point_at(previous, pending=[artifact_id])
        try:
            stream_into(self.store, artifact_id, lambda out: _pack(directory, out))
            rungs = {
                key: value
                for key, value in self.storage.get_trial(self.trial_id).system_attrs.items()
                if key.startswith(RUNG_ATTR_PREFIX)
            }
            checkpoint = Checkpoint(artifact_id, step, evaluation, self.trial.number, rungs)
            stale = [previous.artifact_id] if previous is not None else []
            self._point_at(checkpoint, pending=stale)
        except BaseException:
            self._remove(artifact_id)
            raise
        if previous is not None:
            self._remove(previous.artifact_id)
        return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())

    def discard(self) -> None:
        """Remove the checkpoint of a trial that ends. If the trial has ended already (failed as
        lost by the sweep while its worker was stopped), its re-run may own the checkpoint: it is
        left alone."""
        from optuna.exceptions import UpdateFinishedTrialError

        if self.current is None:
            return
        try:
            self.storage.set_trial_system_attr(self.trial_id, CHECKPOINT_ATTR, None)
        except UpdateFinishedTrialError:
            return
        self._remove(self.current.artifact_id)
        self.current = None

    def _point_at(self, checkpoint: Checkpoint | None, pending: list[str] = ()) -> None:
        """Record `checkpoint` as the trial's latest, and `pending` as artifacts that may exist."""
        latest = asdict(checkpoint) if checkpoint is not None else None
        self.storage.set_trial_system_attr(
            self.trial_id, CHECKPOINT_ATTR, {"latest": latest, "pending": list(pending)}
        )
        self.current = checkpoint

    def _unpack(self, artifact_id: str, destination: Path) -> bool:
        from optuna.artifacts.exceptions import ArtifactNotFound

        try:
            reader = self.store.open_reader(artifact_id)
        except ArtifactNotFound:
            return False
        destination.mkdir(parents=True, exist_ok=True)
        with reader, tarfile.open(fileobj=reader, mode="r|") as tar:
            tar.extractall(destination, filter="data")
        return True

    def _remove(self, artifact_id: str) -> None:
        from optuna.artifacts.exceptions import ArtifactNotFound

        with contextlib.suppress(ArtifactNotFound):
            self.store.remove(artifact_id)


def _pack(directory: Path, out) -> None:
    """An uncompressed tar of `directory` written as a stream into `out`: the store's file is
    the checkpoint's one copy besides Trainer's (a temporary tar first cost a third write and a
    read of every byte: BENCHMARKS.md, "Preemption")."""
    with tarfile.open(fileobj=out, mode="w|") as tar:
        tar.add(directory, arcname=".")


def latest_checkpoint(frozen_trial) -> Checkpoint | None:
    """The latest checkpoint a trial (a FrozenTrial) points at, or None."""
    latest = (frozen_trial.system_attrs.get(CHECKPOINT_ATTR) or {}).get("latest")
    return Checkpoint(**latest) if latest else None


def abandon_without_commit(storage, session, trial) -> None:
    """In the transaction that fails `trial` (a TrialModel, row locked) for good, with no re-run:
    list every checkpoint of its `rerun_of` chain as its pointer's `pending`, and remove their
    files once the transaction commits."""
    models = rdb_models()
    artifact_ids: list[str] = []
    seen: set[int] = set()
    row = trial
    while row is not None and row.trial_id not in seen:
        seen.add(row.trial_id)
        pointer = _attr(session, models.TrialSystemAttributeModel, row.trial_id, CHECKPOINT_ATTR)
        latest = (pointer or {}).get("latest")
        artifact_ids += ([latest["artifact_id"]] if latest else []) + (pointer or {}).get(
            "pending", []
        )
        number = _attr(session, models.TrialUserAttributeModel, row.trial_id, RERUN_OF_ATTR)
        row = (
            None
            if number is None
            else session.query(models.TrialModel)
            .filter_by(study_id=trial.study_id, number=number)
            .one_or_none()
        )
    if not artifact_ids:
        return
    unique = list(dict.fromkeys(artifact_ids))
    storage.set_trial_attr_in(
        session,
        models.TrialSystemAttributeModel,
        trial.trial_id,
        CHECKPOINT_ATTR,
        {"latest": None, "pending": unique},
    )
    _remove_after_commit(storage, session, unique)


def remove_abandoned(storage, study_id: int) -> None:
    """Remove the artifacts that the finished trials of a study still list as `pending`, and empty
    those lists (one transaction; a second sweeper at once removes nothing more)."""
    from optuna.trial import TrialState

    models = rdb_models()
    attrs = models.TrialSystemAttributeModel
    with session_scope(storage) as session:
        rows = (
            session.query(attrs)
            .join(models.TrialModel, models.TrialModel.trial_id == attrs.trial_id)
            .filter(
                models.TrialModel.study_id == study_id,
                models.TrialModel.state == TrialState.FAIL,
                attrs.key == CHECKPOINT_ATTR,
            )
            .order_by(attrs.trial_id)  # two sweepers lock the rows in one order
            .all()
        )
        for row in rows:
            pointer = json.loads(row.value_json) or {}
            if pointer.get("pending"):
                _remove_after_commit(storage, session, pointer["pending"])
                row.value_json = json.dumps({**pointer, "pending": []})


def _attr(session, model, trial_id: int, key: str):
    row = session.query(model).filter_by(trial_id=trial_id, key=key).one_or_none()
    return None if row is None else json.loads(row.value_json)


def _remove_after_commit(storage, session, artifact_ids: list[str]) -> None:
    directory = artifact_dir(make_url(storage.url))
    for artifact_id in artifact_ids:
        remove_after_commit(session, directory, artifact_id)
