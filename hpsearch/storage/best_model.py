"""One model kept per study: the best trial's, replaced atomically when a better trial finishes.

The model is saved and zipped (seconds) outside any lock, as a new study artifact (a finished
trial's attributes can no longer change, a study's can). Then, under the study's best-model lock,
the pointer (a study user attribute) is read afresh from the database and compared: the better
model stays, the other's file is removed. Two workers that finish at once can neither leave the
worse model as "best" nor orphan a file. The archive names its trial in TRIAL_FILE, so that an
export can prove its weights and its model card come from one trial.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from hpsearch.storage.artifacts import remove_artifact
from hpsearch.storage.lock import StudyLock
from hpsearch.storage.queries import fresh_user_attrs

BEST_MODEL_ATTR = "hpsearch_best_model"
TRIAL_FILE = "hpsearch-trial.json"
# Test-only: seconds to wait after saving a model, so that workers' saves overlap in a race test.
SAVE_DELAY_ENV = "HPSEARCH_TEST_SAVE_DELAY"


def best_model_pointer(study: optuna.Study) -> dict[str, Any] | None:
    """{"trial", "value", "artifact_id"} of the kept model, read from the database now."""
    return fresh_user_attrs(study).get(BEST_MODEL_ATTR)


def is_better(value: float, than: float, direction: optuna.study.StudyDirection) -> bool:
    if direction == optuna.study.StudyDirection.MAXIMIZE:
        return value > than
    return value < than


class BestModelKeeper:
    """Keeps the study's best model in `store`; `lock` is the study's best-model lock."""

    def __init__(self, store: FileSystemArtifactStore, lock: StudyLock):
        self.store = store
        self.lock = lock

    def offer(
        self, study: optuna.Study, trial_number: int, value: float, save: Callable[[Path], None]
    ) -> bool:
        """Keep trial `trial_number`'s model (written into a directory by `save`) if it beats the
        kept one; True if it did."""
        current = best_model_pointer(study)
        if current is not None and not is_better(value, current["value"], study.direction):
            return False  # not better now; a pointer only ever gets better, so it never will be
        artifact_id = self._upload(study, trial_number, value, save)
        with self.lock:
            current = best_model_pointer(study)
            kept = current is None or is_better(value, current["value"], study.direction)
            if kept:
                study.set_user_attr(
                    BEST_MODEL_ATTR,
                    {"trial": trial_number, "value": value, "artifact_id": artifact_id},
                )
                loser = current["artifact_id"] if current else None
            else:
                loser = artifact_id  # another worker kept a better model while this one was saved
            if loser is not None:
                remove_artifact(study, loser, self.store)
        return kept

    def _upload(
        self, study: optuna.Study, trial_number: int, value: float, save: Callable[[Path], None]
    ) -> str:
        with tempfile.TemporaryDirectory(prefix="hpsearch-model-") as tmp:
            model_dir = Path(tmp) / "model"
            save(model_dir)
            (model_dir / TRIAL_FILE).write_text(json.dumps({"trial": trial_number, "value": value}))
            if os.environ.get(SAVE_DELAY_ENV):
                time.sleep(float(os.environ[SAVE_DELAY_ENV]))
            archive = Path(tmp) / f"best-model-trial-{trial_number}.zip"
            # Stored, not deflated: safetensors weights barely compress, and zipping costs seconds.
            with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
                for path in sorted(model_dir.rglob("*")):
                    zf.write(path, path.relative_to(model_dir))
            return upload_artifact(
                artifact_store=self.store,
                file_path=str(archive),
                study_or_trial=study,
                mimetype="application/zip",
            )
