"""Which of Optuna's RDB storage calls are retried blindly through an outage, and why each may be.

A connection can break after the server committed a write but before the acknowledgement came back;
a blind retry then sends the write a second time. That is harmless only for a read, or for a write
that sets a value to what it already holds. Each call below is one of those, with the reason. A call
not listed is not retried: a new method of a later Optuna stays unretried until someone has read it
and added it here. The writes that are not safe to repeat (creating a study or a trial, setting a
trial's state, taking a start number) check for their own token before they re-do
(checked_writes.py, start_number.py).
"""

from __future__ import annotations

import functools

from hpsearch.storage.optuna_private import CALLED_BY_OPTUNAS_CACHE, rdb_storage_with_hooks
from hpsearch.storage.retry import retry_through_outage

READ = "a read: nothing is written"
SET = "sets a value: a second write of the same value leaves the same row"

SAFE_TO_RETRY: dict[str, str] = {
    "get_study_id_from_name": READ,
    "get_study_name_from_id": READ,
    "get_study_directions": READ,
    "get_study_user_attrs": READ,
    "get_study_system_attrs": READ,
    "get_all_studies": READ,
    "get_trial_id_from_study_id_trial_number": READ,
    "get_trial_number_from_id": READ,
    "get_trial_param": READ,
    "get_trial": READ,
    "get_all_trials": READ,
    "get_n_trials": READ,
    "get_best_trial": READ,
    "get_trial_params": READ,
    "get_trial_user_attrs": READ,
    "get_trial_system_attrs": READ,
    "check_trial_is_updatable": "checks a trial's state: a read",
    "stale_trial_ids": "a read: the trials whose heartbeat is older than the grace period",
    "set_study_user_attr": SET,
    "set_study_system_attr": SET,
    "set_trial_param": SET,
    "set_trial_intermediate_value": SET,
    "set_trial_user_attr": SET,
    "set_trial_system_attr": SET,
    "record_heartbeat": "sets the trial's heartbeat to now: a later time is as good",
    "delete_study": "a repeat after a delete that landed only finds the study gone",
    "remove_session": "closes this process's session: nothing is written",
    # Optuna's caching layer calls these on the backend directly (optuna_private.py names them).
    CALLED_BY_OPTUNAS_CACHE[0]: READ,  # the trials of a study
    CALLED_BY_OPTUNAS_CACHE[1]: READ,  # the best trial's id
    CALLED_BY_OPTUNAS_CACHE[2]: SET,  # a trial's parameter
}


@functools.cache
def retrying_storage_class():
    """RDBStorage (with hpsearch's hooks) whose SAFE_TO_RETRY calls ride out an outage."""
    hooked = rdb_storage_with_hooks()
    methods = {name: retry_through_outage(getattr(hooked, name)) for name in SAFE_TO_RETRY}
    return type("RetryingRDBStorage", (hooked,), methods)
