"""One model kept per study: the best trial's model and tokenizer, as an Optuna artifact.

The artifact is a zip of a `save_pretrained` directory named after its trial, attached to the study
(a finished trial's attributes can no longer change, a study's can). A study user attribute points at
the current best; a better trial replaces it: the previous file is removed and its entry nulled, as
optuna-dashboard's own delete does.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound

BEST_MODEL_ATTR = "hpsearch_best_model"
ARTIFACT_ATTR_PREFIX = "artifacts:"  # optuna.artifacts' key for an artifact's metadata


def open_artifact_store(directory: Path) -> FileSystemArtifactStore:
    directory.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(directory))


def best_model_pointer(study: optuna.Study) -> dict[str, Any] | None:
    return study.user_attrs.get(BEST_MODEL_ATTR)


def is_better(value: float, than: float, direction: optuna.study.StudyDirection) -> bool:
    if direction == optuna.study.StudyDirection.MAXIMIZE:
        return value > than
    return value < than


def keep_if_best(trial: optuna.Trial, value: float, model, tokenizer, store: FileSystemArtifactStore) -> bool:
    """Save the trial's model as the study's best if it beats the current one; True if it did."""
    study = trial.study
    current = best_model_pointer(study)
    if current is not None and not is_better(value, current["value"], study.direction):
        return False
    with tempfile.TemporaryDirectory(prefix="hpsearch-model-") as tmp:
        model_dir = Path(tmp) / "model"
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        archive = Path(tmp) / f"best-model-trial-{trial.number}.zip"
        # Stored, not deflated: safetensors weights barely compress and zipping them costs seconds.
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
            for path in sorted(model_dir.rglob("*")):
                zf.write(path, path.relative_to(model_dir))
        artifact_id = upload_artifact(
            artifact_store=store, file_path=str(archive), study_or_trial=study, mimetype="application/zip"
        )
    study.set_user_attr(
        BEST_MODEL_ATTR, {"trial": trial.number, "value": value, "artifact_id": artifact_id}
    )
    if current is not None:
        remove_artifact(study, current, store)
    return True


def remove_artifact(study: optuna.Study, pointer: dict[str, Any], store: FileSystemArtifactStore) -> None:
    try:
        store.remove(pointer["artifact_id"])
    except ArtifactNotFound:
        pass  # already gone: another worker replaced it first
    study._storage.set_study_system_attr(
        study._study_id, ARTIFACT_ATTR_PREFIX + pointer["artifact_id"], json.dumps(None)
    )
