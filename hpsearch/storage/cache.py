"""Optuna's per-process cache of a study's trials, with the one read it makes slow made cheap.

Optuna wraps an RDB storage in `_CachedStorage`: finished trials are read once, and every read of
the study re-reads each unfinished trial in full (params, values, attributes, intermediate values).
`Study.ask` starts by looking for WAITING trials (re-runs of lost or interrupted ones), and the
cache answers that by re-reading every RUNNING trial of every worker. hpsearch asks under the study
lock, so that read was the part of the lock's hold that grew with the number of workers (measured
with bench/scaling.py --running: BENCHMARKS.md, "The lock's hold and the number of running trials").
Here the WAITING trials are read alone, by their state, in one query on the database, so the hold
no longer depends on how many trials are running.
"""

from __future__ import annotations

import copy

from optuna.storages import BaseStorage, RDBStorage, _CachedStorage
from optuna.storages._cached_storage import _StudyInfo
from optuna.trial import TrialState


class StudyCache(_CachedStorage):
    def get_all_trials(self, study_id: int, deepcopy: bool = True, states=None):
        if states is not None and tuple(states) == (TrialState.WAITING,):
            # Read fresh (a waiting trial is the one state every worker races to change), then
            # known to the cache as unfinished, as the trials it reads itself: the one popped is
            # written to next, and re-read until it finishes.
            waiting = self._backend.get_all_trials(study_id, deepcopy=False, states=states)
            with self._lock:
                study = self._studies.setdefault(study_id, _StudyInfo())
                self._add_trials_to_cache(study_id, waiting)
                study.unfinished_trial_ids.update(t._trial_id for t in waiting)
            return copy.deepcopy(waiting) if deepcopy else waiting
        return super().get_all_trials(study_id, deepcopy=deepcopy, states=states)


def cached(storage: BaseStorage) -> BaseStorage:
    """The storage a study should use: an RDB storage behind StudyCache, any other as it is."""
    return StudyCache(storage) if isinstance(storage, RDBStorage) else storage
