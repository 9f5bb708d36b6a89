"""Files kept beside the storage: the artifact store (the best model, each trial's metrics file).

Optuna's artifacts are files in a store plus a metadata entry in the study's or trial's system
attributes; optuna-dashboard lists and serves them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound
from sqlalchemy.engine import URL

from hpsearch.storage.queries import set_study_system_attr
from hpsearch.storage.url import sqlite_path

ARTIFACTS_ENV = "HPSEARCH_ARTIFACTS"
ARTIFACT_ATTR_PREFIX = "artifacts:"  # optuna.artifacts' key for an artifact's metadata


def artifact_dir(url: URL) -> Path:
    """HPSEARCH_ARTIFACTS, else `artifacts/` beside a SQLite file, else storage/artifacts."""
    if os.environ.get(ARTIFACTS_ENV):
        return Path(os.environ[ARTIFACTS_ENV])
    database = sqlite_path(url)
    return Path(database).parent / "artifacts" if database else Path("storage/artifacts")


def open_artifact_store(directory: Path, *, create: bool = True) -> FileSystemArtifactStore:
    """The store in `directory`; readers pass create=False, so a mistake leaves no folder behind."""
    if create:
        directory.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(directory))


def remove_artifact(study: optuna.Study, artifact_id: str, store: FileSystemArtifactStore) -> None:
    """Delete a study artifact's file and null its entry, as optuna-dashboard's own delete does."""
    try:
        store.remove(artifact_id)
    except ArtifactNotFound:
        pass  # already gone
    set_study_system_attr(study, ARTIFACT_ATTR_PREFIX + artifact_id, json.dumps(None))
