"""A list in a study user attribute that several processes append to, none losing another's item.

Appending is read, add, write: two processes doing that at once would each write the list they read
plus their own item, and one item would be lost. Under the study lock of the list's purpose, the
list is read afresh from the database (never a cached copy), so every append lands.
"""

from __future__ import annotations

from typing import Any

import optuna

from hpsearch.storage.lock import StudyLock
from hpsearch.storage.queries import fresh_user_attrs


def append_study_user_attr(study: optuna.Study, lock: StudyLock, key: str, item: Any) -> list[Any]:
    """Append `item` to the list in the study user attribute `key` (created if absent), under
    `lock`; returns the list as written."""
    with lock:
        items = list(fresh_user_attrs(study).get(key) or [])
        items.append(item)
        study.set_user_attr(key, items)
    return items


def study_user_attr_list(study: optuna.Study, key: str) -> list[Any]:
    """The list in the study user attribute `key`, as the database holds it now; [] when absent."""
    return list(fresh_user_attrs(study).get(key) or [])
