"""One model kept per study: the best COMPLETE trial's, moved in the transaction that completes it.

A worker writes its trial's model to the artifact store as the trial's *pending* model (a trial
system attribute names it, written before the file so that a crash mid-upload still leaves a
record), outside any lock. Nothing else changes until Optuna finishes the trial: the storage's
set_trial_state_values calls `settle_pending_model` inside its transaction.

The write is one pass (storage.model_upload: the zip is streamed into the store, the weights
straight into their zip entry) and runs on the worker's background writer while the trial does its
remaining bookkeeping (bootstrap interval, cost and metrics records); the trial waits for it only
at the end of its objective, before it returns its value (`uploading`). So the file is complete
before Optuna's tell can move the pointer to it, and everything below holds as for a synchronous
write. Nothing is copied for the write: the trial's model is not changed between the offer and the
wait (training is over), so the writer reads its tensors as they are (a GPU tensor comes to the CPU
one at a time). Deferring the pointer to a second transaction after the upload would let the next
trial start sooner, but a worker lost in between would leave a COMPLETE best trial whose model is
never kept (no re-run would write it); this design keeps issue 23's guarantee that a lost worker's
trial is re-run. A failed write (disk full) does not fail the trial: it completes without a kept
model, its reason in the BEST_MODEL_ERROR_ATTR user attribute and in a warning; Ctrl-C cancels the
write and removes the partial file.

- COMPLETE: the study's row is locked (FOR UPDATE; on SQLite the transaction already holds the
  database's write lock), the pointer (study user attribute BEST_MODEL_ATTR) is read as committed
  now, and moved to this trial if its value is better. The pointer, the dashboard's artifact entry
  and the trial's state commit together; two workers finishing at once serialize on the lock, so
  the worse model can never end up "best".
- any other end (FAIL, PRUNED; the heartbeat sweep failing a lost trial): the pending model loses.
- COMPLETE in a multi-objective study: the front's kept models (hpsearch.storage.front_models).

The losing file (the old best's, or the pending one) is removed after the commit; a process that
dies before the commit leaves the pointer and the old best's file untouched, and whoever fails its
trial removes the orphan upload. (A process killed in the milliseconds between the commit and the
removal leaves one unlisted file behind.)

Readers go through `resolve_best_model`: the pointer counts only if its trial is COMPLETE and has
study.best_trial's value, so `best`, `export`, the note and the run summary name the same trial as
study.best_trial, or say in one line that the best trial's model is not kept. The archive names its
trial in TRIAL_FILE, so that an export can prove its weights and its model card come from one trial.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from hpsearch.errors import first_line, is_hpsearch_bug
from hpsearch.storage.artifacts import ARTIFACT_ATTR_PREFIX, artifact_dir
from hpsearch.storage.front_models import may_join_front, settle_front_model
from hpsearch.storage.model_upload import (
    BackgroundWriter,
    UploadCancelled,
    ZipEntry,
    stream_into,
    write_archive,
)
from hpsearch.storage.optuna_private import rdb_models, storage_of, study_id_of, trial_id_of
from hpsearch.storage.queries import fresh_user_attrs, lock_study_attr

BEST_MODEL_ATTR = "hpsearch_best_model"
PENDING_MODEL_ATTR = "hpsearch:pending_model"  # trial system attribute: its uploaded model
TRIAL_FILE = "hpsearch-trial.json"
MIMETYPE = "application/zip"
# Test-only: seconds to wait after saving a model, so that workers' saves overlap in a race test.
SAVE_DELAY_ENV = "HPSEARCH_TEST_SAVE_DELAY"
REMOVALS_KEY = "hpsearch:remove_after_commit"  # a session's `info` key
BEST_MODEL_ERROR_ATTR = "best_model_error"  # trial user attribute: why its model was not written

# Writes a model's small files into a directory, and returns the large ones to stream into the
# archive (hpsearch.trial.model_files), or None (save_pretrained: everything in the directory).
SaveModel = Callable[[Path], "list[ZipEntry] | None"]

log = logging.getLogger("hpsearch.storage")


def best_model_pointer(study: optuna.Study) -> dict[str, Any] | None:
    """{"trial", "value", "artifact_id"} as the database holds it now; readers that show or use the
    kept model call resolve_best_model, which checks it against study.best_trial."""
    return fresh_user_attrs(study).get(BEST_MODEL_ATTR)


def is_better(value: float, than: float, direction: optuna.study.StudyDirection) -> bool:
    if direction == optuna.study.StudyDirection.MAXIMIZE:
        return value > than
    return value < than


@dataclass(frozen=True)
class BestModel:
    """The kept model of the best trial (`pointer`), or why there is none (`problem`, one line)."""

    pointer: dict[str, Any] | None
    problem: str | None


def resolve_best_model(study: optuna.Study) -> BestModel:
    """The study's kept model, if it is the best trial's: its trial is COMPLETE and has
    study.best_trial's value (a tie keeps the first to complete)."""
    name = study.study_name
    if len(study.directions) > 1:
        return BestModel(
            None,
            f"study {name!r} has several objectives: its kept models are its Pareto front's "
            f"(`hpsearch best --study {name}` lists them); export one with --trial N or "
            "--max-latency-ms X",
        )
    try:
        best = study.best_trial
    except ValueError:
        return BestModel(
            None,
            f"study {name!r} has no best model yet; run it first (hpsearch run --study {name})",
        )
    pointer = best_model_pointer(study)
    kept = None if pointer is None else _trial_by_number(study, pointer["trial"])
    if kept is not None and kept.state == TrialState.COMPLETE and kept.value == best.value:
        return BestModel(pointer, None)
    if pointer is None:
        why = "no model was kept"
    elif kept is None:
        why = f"the kept model names trial {pointer['trial']}, which is not in the study"
    elif kept.state != TrialState.COMPLETE:
        why = f"the kept model is trial {kept.number}'s, which is {kept.state.name}"
    else:
        why = f"the kept model is trial {kept.number}'s, of value {kept.value:.4f}"
    return BestModel(
        None,
        f"the best trial of study {name!r} (trial {best.number}, value {best.value:.4f}) has no "
        f"kept model ({why}); `hpsearch train --study {name}` trains its configuration again",
    )


def _trial_by_number(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial | None:
    storage = storage_of(study)
    try:
        return storage.get_trial(
            storage.get_trial_id_from_study_id_trial_number(study_id_of(study), number)
        )
    except KeyError:
        return None


class BestModelKeeper:
    """Uploads a finished trial's model to `store` as its pending model, when it may be the best:
    in the background (one BackgroundWriter per worker), waited for before the trial ends."""

    def __init__(self, store: FileSystemArtifactStore):
        self.store = store
        self.writer = BackgroundWriter()

    def offer(self, trial: optuna.Trial, value: float, save: SaveModel) -> bool:
        """Upload trial's model as its pending model if it beats the kept one now, and wait for
        it; True if it was written. It becomes the kept model when the trial is COMPLETE and still
        the best then (settle_pending_model)."""
        upload = self.start_offer(trial, value, save)
        return upload is not None and self.finish(upload)

    @contextlib.contextmanager
    def uploading(self, trial: optuna.Trial) -> Iterator[Callable[[float, SaveModel], None]]:
        """A trial's window for its upload: `offer(value, save)` inside starts it in the
        background, and the block's end waits for it (the trial's value is returned, and the
        pointer may move, only after that); an exception out of the block (Ctrl-C) cancels it."""
        uploads: list[Upload] = []

        def offer(value: float, save: SaveModel) -> None:
            upload = self.start_offer(trial, value, save)
            if upload is not None:
                uploads.append(upload)

        ended = False
        try:
            yield offer
            ended = True
        finally:
            for upload in uploads:
                if not ended:
                    self.finish(upload, cancel=True)
                    continue
                try:
                    self.finish(upload)
                except BaseException:  # Ctrl-C while waiting: stop the write, then go on out
                    self.finish(upload, cancel=True)
                    raise

    def start_offer(self, trial: optuna.Trial, value: float, save: SaveModel) -> Upload | None:
        """Start uploading trial's model (see `offer`) on the background writer; None if it is
        not better than the kept one (nothing is written)."""
        study = trial.study
        if (
            len(study.directions) > 1
        ):  # `value` is the trial's values (hpsearch.storage.front_models)
            if not may_join_front(study, value):
                return None
        else:
            current = best_model_pointer(study)
            if current is not None and not is_better(value, current["value"], study.direction):
                return None  # not better now; a pointer only ever gets better, so it never will be
        pending = {
            "trial": trial.number,
            "value": value,
            "artifact_id": str(uuid.uuid4()),
            "filename": f"best-model-trial-{trial.number}.zip",
        }
        try:
            # Recorded before the file is written, so that whoever fails a lost trial removes it.
            storage_of(study).set_trial_system_attr(trial_id_of(trial), PENDING_MODEL_ATTR, pending)
        except UpdateFinishedTrialError:
            return None  # the trial was failed meanwhile (its worker was stopped too long)
        cancelled = threading.Event()
        future = self.writer.submit(lambda: self._upload(pending, save, cancelled))
        return Upload(trial, pending, future, cancelled)

    def finish(self, upload: Upload, cancel: bool = False) -> bool:
        """Wait for `upload` (stopping it first with `cancel`); True if its model was written.
        A failed write is no failed trial: its trial completes without a kept model, the reason
        in its BEST_MODEL_ERROR_ATTR user attribute and in a warning."""
        if cancel:
            upload.cancelled.set()
        try:
            upload.future.result()
            return True
        except UploadCancelled:
            return False  # its trial ends FAIL (interrupted), which drops the pending record
        except Exception as e:
            if is_hpsearch_bug(e):
                raise
            reason = f"{type(e).__name__}: {first_line(e)}"
        trial = upload.trial
        log.warning(
            "trial %s: its model was not kept: writing it failed (%s)", trial.number, reason
        )
        with contextlib.suppress(UpdateFinishedTrialError):
            # No pending model any more: the trial's completion moves no pointer to a lost file.
            storage_of(trial.study).set_trial_system_attr(
                trial_id_of(trial), PENDING_MODEL_ATTR, None
            )
            trial.set_user_attr(BEST_MODEL_ERROR_ATTR, reason)
        return False

    def close(self) -> None:
        """Finish the uploads in flight (a worker's exit)."""
        self.writer.close()

    def _upload(self, pending: dict[str, Any], save: SaveModel, cancelled: threading.Event) -> None:
        with tempfile.TemporaryDirectory(prefix="hpsearch-model-") as tmp:
            directory = Path(tmp)
            entries = save(directory) or []
            trial_record = {"trial": pending["trial"], "value": pending["value"]}
            (directory / TRIAL_FILE).write_text(json.dumps(trial_record))
            if os.environ.get(SAVE_DELAY_ENV):
                time.sleep(float(os.environ[SAVE_DELAY_ENV]))
            stream_into(
                self.store,
                pending["artifact_id"],
                lambda out: write_archive(out, directory, entries, cancelled),
            )


@dataclass(frozen=True)
class Upload:
    """A trial's model being written in the background."""

    trial: optuna.Trial
    pending: dict[str, Any]
    future: Future
    cancelled: threading.Event


def settle_pending_model(storage, session, trial, state: TrialState, values) -> None:
    """Inside the transaction that finishes `trial` (an ORM row) with `state`: keep its pending
    model if it is COMPLETE and better than the kept one, and remove the loser after the commit."""
    models = rdb_models()

    attrs = models.TrialSystemAttributeModel
    row = (
        session.query(attrs)
        .filter(attrs.trial_id == trial.trial_id, attrs.key == PENDING_MODEL_ATTR)
        .one_or_none()
    )
    if row is None:
        return
    pending = json.loads(row.value_json)
    # A write first: on SQLite it takes the database's write lock before the pointer is read. The
    # record goes, so that a re-run (which copies system attributes) does not inherit it.
    session.delete(row)
    session.flush()
    if pending is None:
        return  # its upload failed (BestModelKeeper.finish): no model, and its file is gone
    loser = pending["artifact_id"]
    on_front = pending["trial"] == trial.number and values is not None and len(values) > 1
    if state == TrialState.COMPLETE and on_front:
        for removed in settle_front_model(session, trial, values, pending):
            remove_after_commit(session, artifact_dir(make_url(storage.url)), removed)
        return
    completed = state == TrialState.COMPLETE and values is not None and len(values) == 1
    if completed and pending["trial"] == trial.number:
        moved, replaced = _move_pointer(session, trial, values[0], pending)
        if moved:
            loser = replaced
    if loser is not None:
        remove_after_commit(session, artifact_dir(make_url(storage.url)), loser)


def _move_pointer(session, trial, value: float, pending: dict[str, Any]) -> tuple[bool, str | None]:
    """Point at `pending` if `value` beats the kept model, the study's row locked; (whether it
    moved, the artifact of the model it replaced)."""
    study, pointer_row, current = lock_study_attr(session, trial.study_id, BEST_MODEL_ATTR)
    models = rdb_models()
    user_attrs, system_attrs = models.StudyUserAttributeModel, models.StudySystemAttributeModel
    direction = study.directions[0].direction
    if current is not None and not is_better(value, current["value"], direction):
        return False, None
    pointer = {"trial": trial.number, "value": value, "artifact_id": pending["artifact_id"]}
    if pointer_row is None:
        session.add(
            user_attrs(study_id=study.study_id, key=BEST_MODEL_ATTR, value_json=json.dumps(pointer))
        )
    else:
        pointer_row.value_json = json.dumps(pointer)
    # The dashboard's entry, as optuna.artifacts.upload_artifact writes it (a JSON string).
    meta = {
        "artifact_id": pending["artifact_id"],
        "filename": pending["filename"],
        "mimetype": MIMETYPE,
        "encoding": None,
    }
    session.add(
        system_attrs(
            study_id=study.study_id,
            key=ARTIFACT_ATTR_PREFIX + pending["artifact_id"],
            value_json=json.dumps(json.dumps(meta)),
        )
    )
    if current is not None:
        replaced = (
            session.query(system_attrs)
            .filter(
                system_attrs.study_id == study.study_id,
                system_attrs.key == ARTIFACT_ATTR_PREFIX + current["artifact_id"],
            )
            .with_for_update()  # locking, as above: it was committed after this snapshot
            .one_or_none()
        )
        if replaced is not None:  # nulled, as optuna-dashboard's own delete does
            replaced.value_json = json.dumps(json.dumps(None))
    return True, None if current is None else current["artifact_id"]


def remove_after_commit(session, directory: Path, artifact_id: str) -> None:
    """Remove `artifact_id`'s file from the store in `directory` once `session`'s transaction
    commits; a rollback (or an interrupted transaction) removes nothing."""
    from sqlalchemy import event

    if REMOVALS_KEY not in session.info:  # once per session object (one per thread)
        session.info[REMOVALS_KEY] = []
        event.listen(session, "after_commit", _run_removals)
        event.listen(session, "after_transaction_end", _drop_removals)
    session.info[REMOVALS_KEY].append((directory, artifact_id))


def _run_removals(session) -> None:
    removals, session.info[REMOVALS_KEY] = session.info[REMOVALS_KEY], []
    for directory, artifact_id in removals:
        if not directory.is_dir():
            continue  # this process sees no store (a reader elsewhere); nothing to remove here
        try:
            FileSystemArtifactStore(str(directory)).remove(artifact_id)
        except (ArtifactNotFound, OSError):
            pass  # never written (a worker killed mid-upload), or already gone


def _drop_removals(session, transaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended: committed ones already ran
        session.info[REMOVALS_KEY] = []
