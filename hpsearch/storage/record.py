"""Study user attributes that several processes update from what they hold, none losing another's
write: a list appended to (the final trainings, the spec's changes), a value replaced together
with its record (the stored spec).

Such an update is read, change, write. Two processes doing it at once would each write what they
read plus their own change, and one change would be lost; a lock beside the database does not
prevent it either, since a server frees the lock of a holder that stalled (SIGSTOP, a pause, a
partition) while the holder still believes it holds it. So the read and the write are one
transaction: it first writes the study's row, which locks it on PostgreSQL and MySQL and takes the
database's write lock on SQLite (where a transaction begins at its first write, and reads before it
would see an older snapshot), then reads the attributes and writes the change. A process that
stalls inside it holds the row, and nobody writes past it; once the transaction ends, the next
reads what it wrote. A retry after a lost connection reads again, so `update` must describe the
state it wants ("the list holds this item"), not a step ("add one more").
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import optuna

from hpsearch.storage.optuna_private import (
    backend_of,
    rdb_models,
    session_scope,
    study_id_of,
)
from hpsearch.storage.queries import fresh_user_attrs
from hpsearch.storage.retry import retry_checked

# Test-only: seconds an update waits between its read and its write, so that a test can stop the
# process inside its transaction.
UPDATE_DELAY_ENV = "HPSEARCH_TEST_UPDATE_DELAY"

Update = Callable[[dict[str, Any]], dict[str, Any]]
"""Given the study's user attributes as the database holds them, the ones to write ({}: none)."""


def update_study_user_attrs(study: optuna.Study, update: Update) -> dict[str, Any]:
    """Apply `update` to the study's user attributes in one transaction; returns what it wrote.
    An exception from `update` writes nothing and comes out as it was raised."""
    backend = backend_of(study)
    if not hasattr(backend, "scoped_session"):  # an in-memory storage: one process holds it
        changes = update(fresh_user_attrs(study))
        for key, value in changes.items():
            study.set_user_attr(key, value)
        return changes
    models = rdb_models()
    study_id = study_id_of(study)

    def attempt(_first: bool) -> dict[str, Any]:
        attrs = models.StudyUserAttributeModel
        with session_scope(backend) as session:
            # The write that locks: the study's row (a server) or the database (SQLite).
            session.query(models.StudyModel).filter(models.StudyModel.study_id == study_id).update(
                {models.StudyModel.study_name: models.StudyModel.study_name},
                synchronize_session=False,
            )
            rows = {row.key: row for row in session.query(attrs).filter(attrs.study_id == study_id)}
            changes = update({key: json.loads(row.value_json) for key, row in rows.items()})
            if os.environ.get(UPDATE_DELAY_ENV):
                time.sleep(float(os.environ[UPDATE_DELAY_ENV]))
            for key, value in changes.items():
                if key in rows:
                    rows[key].value_json = json.dumps(value)
                else:
                    session.add(attrs(study_id=study_id, key=key, value_json=json.dumps(value)))
            return changes

    return retry_checked(attempt)


def append_study_user_attr(study: optuna.Study, key: str, item: Any) -> list[Any]:
    """Append `item` to the list in the study user attribute `key` (created if absent); an item
    equal to one the list holds already is not added again (a retry finds its own item there).
    Returns the list as written."""
    written: list[Any] = []

    def appended(attrs: dict[str, Any]) -> dict[str, Any]:
        items = list(attrs.get(key) or [])
        if item not in items:  # else: an earlier attempt landed; only its answer was lost
            items.append(item)
        written[:] = items
        return {key: items}

    update_study_user_attrs(study, appended)
    return written


def study_user_attr_list(study: optuna.Study, key: str) -> list[Any]:
    """The list in the study user attribute `key`, as the database holds it now; [] when absent."""
    return list(fresh_user_attrs(study).get(key) or [])
