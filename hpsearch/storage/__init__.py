"""Where studies live: the storage URL, Optuna's RDB storage with retries that are safe, the study
locks, the artifact store, the kept best model, a running trial's checkpoint, a lost or interrupted
trial's re-run and the study's lists appended to. The only package of hpsearch that relies on
Optuna's private API, and only through optuna_private.py, which names each use; no torch or
transformers here."""

from hpsearch.storage.artifacts import (
    ARTIFACTS_ENV,
    artifact_dir,
    open_artifact_store,
    remove_artifact,
)
from hpsearch.storage.best_model import (
    BEST_MODEL_ATTR,
    TRIAL_FILE,
    BestModel,
    BestModelKeeper,
    best_model_pointer,
    is_better,
    resolve_best_model,
)
from hpsearch.storage.cache import StudyCache, cached
from hpsearch.storage.checkpoint import CHECKPOINT_ATTR, Checkpoint, TrialCheckpoint
from hpsearch.storage.enqueue import QueuedTrial, enqueue_once
from hpsearch.storage.front_models import front_model_pointers
from hpsearch.storage.lock import StudyLock
from hpsearch.storage.queries import (
    count_trials,
    create_study,
    fail_running_trials,
    heartbeat_ages,
    refuse_trials_beyond,
    set_study_system_attr,
    set_user_attrs,
    study_system_attrs,
    take_start_number,
    trials_of,
)
from hpsearch.storage.rdb import apply_heartbeat, closing_storage, open_storage
from hpsearch.storage.record import (
    append_study_user_attr,
    study_user_attr_list,
    update_study_user_attrs,
)
from hpsearch.storage.rerun import (
    FAIL_REASON_ATTR,
    INTERRUPTED,
    LOST,
    RERUN_OF_ATTR,
    RERUN_REASONS,
    fail_for_rerun,
    rerun_when_failed,
)
from hpsearch.storage.retry import describe_storage_error, is_transient, retry_through_outage
from hpsearch.storage.url import (
    DEFAULT_STORAGE,
    PASSWORD_ENV,
    PASSWORD_FILE_ENV,
    STORAGE_ENV,
    redact,
    resolve_storage_url,
)

__all__ = [
    "ARTIFACTS_ENV",
    "BEST_MODEL_ATTR",
    "CHECKPOINT_ATTR",
    "DEFAULT_STORAGE",
    "FAIL_REASON_ATTR",
    "INTERRUPTED",
    "LOST",
    "PASSWORD_ENV",
    "PASSWORD_FILE_ENV",
    "RERUN_OF_ATTR",
    "RERUN_REASONS",
    "STORAGE_ENV",
    "TRIAL_FILE",
    "BestModel",
    "BestModelKeeper",
    "Checkpoint",
    "QueuedTrial",
    "StudyCache",
    "StudyLock",
    "TrialCheckpoint",
    "append_study_user_attr",
    "apply_heartbeat",
    "artifact_dir",
    "best_model_pointer",
    "cached",
    "closing_storage",
    "count_trials",
    "create_study",
    "describe_storage_error",
    "enqueue_once",
    "fail_for_rerun",
    "fail_running_trials",
    "front_model_pointers",
    "heartbeat_ages",
    "is_better",
    "is_transient",
    "open_artifact_store",
    "open_storage",
    "redact",
    "refuse_trials_beyond",
    "remove_artifact",
    "rerun_when_failed",
    "resolve_best_model",
    "resolve_storage_url",
    "retry_through_outage",
    "set_study_system_attr",
    "set_user_attrs",
    "study_system_attrs",
    "study_user_attr_list",
    "take_start_number",
    "trials_of",
    "update_study_user_attrs",
]
