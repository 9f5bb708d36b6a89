"""RDBStorage that rides out a database outage without ever repeating a write that already landed.

Put together from one module per job:
- safe_retries.py: the calls retried blindly (reads, and writes that set a value), each with why;
- checked_writes.py: creating a study or a trial and setting a trial's state, which a retry may
  re-do only after it has looked for its own token (with a trial's re-run, its checkpoints given
  up and its best model settled in the same transaction);
- start_number.py: a study's start numbers, each handed out once;
- budget_fence.py: no trial created beyond the study's budget;
- shortcuts.py: cheaper calls for the worker loop.
"""

from __future__ import annotations

import functools

from hpsearch.storage.budget_fence import BudgetFence
from hpsearch.storage.checked_writes import CheckedWrites
from hpsearch.storage.safe_retries import retrying_storage_class
from hpsearch.storage.shortcuts import Shortcuts
from hpsearch.storage.start_number import StartNumbers


@functools.cache
def resilient_storage_class():
    class ResilientRDBStorage(
        Shortcuts, CheckedWrites, StartNumbers, BudgetFence, retrying_storage_class()
    ):
        pass

    return ResilientRDBStorage
