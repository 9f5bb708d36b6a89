"""Every part of Optuna's private API that hpsearch uses, named in this one module.

Optuna's public API cannot reach a study's storage and ids (`Study._storage`, `Study._study_id`,
`FrozenTrial._trial_id`), open a session on the RDB storage and read or write its rows in one
transaction (`optuna.storages._rdb`: the ORM models and `_create_scoped_session`), take part in the
transactions that create a trial and that find stale trials (`RDBStorage._create_new_trial`,
`_get_stale_trial_ids` and the steps they use), or read a study's waiting trials through Optuna's
per-process cache (`optuna.storages._CachedStorage`). hpsearch needs each of them for a write that
must be one transaction: the budget's fence, a lost trial's re-run, the kept model's pointer, a
start number, a retry that must not repeat a write that landed.

The rest of hpsearch reaches them only through the names below. Each is checked against the
installed Optuna by tests/storage/test_optuna_private.py, which fails on a release that renames,
removes or stops calling one; pyproject.toml keeps optuna below its next major.
"""

from __future__ import annotations

import functools
from typing import Any

# Private methods of RDBStorage that Optuna's own caching layer calls on it directly (so hpsearch's
# retries through an outage must wrap them too, besides the public BaseStorage methods).
CALLED_BY_OPTUNAS_CACHE = ("_get_trials", "_get_best_trial_id", "_set_trial_param")


def storage_of(study) -> Any:
    """The storage a study reads and writes through (Optuna's cache, where it wraps one)."""
    return study._storage


def backend_of(study) -> Any:
    """The storage under Optuna's caching layer, where hpsearch's own methods live."""
    storage = study._storage
    return getattr(storage, "_backend", storage)


def study_id_of(study) -> int:
    return study._study_id


def trial_id_of(trial) -> int:
    """The storage's id of a trial (an optuna.Trial or a FrozenTrial), not its number."""
    return trial._trial_id


def set_trial_id(frozen, trial_id: int) -> None:
    """Give a FrozenTrial built by hand the storage id of the row it describes."""
    frozen._trial_id = trial_id


def rdb_models():
    """Optuna's ORM models of the RDB storage's tables (StudyModel, TrialModel, ...)."""
    from optuna.storages._rdb import models

    return models


def session_scope(storage, ignore_integrity_error: bool = False):
    """A session of `storage` (an RDBStorage) that commits when the block ends and rolls back if it
    raises, as each of Optuna's own writes does."""
    from optuna.storages._rdb.storage import _create_scoped_session

    return _create_scoped_session(storage.scoped_session, ignore_integrity_error)


@functools.cache
def rdb_storage_with_hooks():
    """RDBStorage with the private steps that hpsearch takes part in exposed under public names:
    a subclass overrides `create_trial_row` and `stale_trial_ids` (and calls the others) rather than
    Optuna's private names."""
    from optuna.storages import RDBStorage

    class RDBStorageHooks(RDBStorage):
        def _create_new_trial(self, study_id: int, template_trial=None):
            return self.create_trial_row(study_id, template_trial)

        def create_trial_row(self, study_id: int, template_trial=None):
            """Create a trial (a new RUNNING one, or a WAITING one from a template): the one step
            every trial creation goes through, RDBStorage.create_new_trial and Optuna's cache."""
            return super()._create_new_trial(study_id, template_trial)

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            return self.stale_trial_ids(study_id)

        def stale_trial_ids(self, study_id: int) -> list[int]:
            """The RUNNING trials whose heartbeat is older than the grace period: what Optuna's
            fail_stale_trials asks for first, then fails each of."""
            return super()._get_stale_trial_ids(study_id)

        def prepare_trial_row(self, study_id: int, template_trial, session):
            """A new trial's row (numbered, with the template's params and attributes), added to
            `session`, not committed."""
            return self._get_prepared_new_trial(study_id, template_trial, session)

        def set_trial_attr_in(self, session, model, trial_id: int, key: str, value) -> None:
            """Set a trial user or system attribute (`model` says which) in `session`."""
            self._set_trial_attr_without_commit(session, model, trial_id, key, value)

        def set_trial_value_in(self, session, trial_row, objective: int, value: float) -> None:
            """Set a trial's value for objective `objective` in `session`."""
            self._set_trial_value_without_commit(session, trial_row, objective, value)

    return RDBStorageHooks


@functools.cache
def cache_with_hooks():
    """Optuna's per-process cache of a study's trials, with the one step hpsearch adds to it."""
    from optuna.storages import _CachedStorage
    from optuna.storages._cached_storage import _StudyInfo

    class CacheHooks(_CachedStorage):
        @property
        def backend(self):
            return self._backend

        def remember_unfinished(self, study_id: int, trials: list) -> None:
            """Put `trials` (read from the backend) in the cache as unfinished ones, which the cache
            re-reads until they finish, exactly as it treats the trials it reads itself."""
            with self._lock:
                study = self._studies.setdefault(study_id, _StudyInfo())
                self._add_trials_to_cache(study_id, trials)
                study.unfinished_trial_ids.update(t._trial_id for t in trials)

    return CacheHooks
