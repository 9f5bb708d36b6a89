"""A study's start numbers (0, 1, 2 ...), each handed out once, through any retry.

Each is a study system attribute row `hpsearch:start:N` holding the token of the call that took it;
the unique (study_id, key) of that table makes sure no number is handed out twice, and a retry that
finds its token returns the number it had taken.
"""

from __future__ import annotations

import json
import time
import uuid

from hpsearch.storage.optuna_private import rdb_models, session_scope
from hpsearch.storage.retry import retry_checked

START_ATTR_PREFIX = "hpsearch:start:"  # study system attributes :0, :1 ...: the token that took it
# Attempts at a start number that another process took in the same moment (SQLite, where no row
# lock queues the takers; the unique (study_id, key) refuses the second).
START_NUMBER_ATTEMPTS = 20


class StartNumbers:
    def take_start_number(self, study_id: int) -> int:
        """The study's next start number, 0 first: each handed out once, to whichever of any
        number of processes on any backend asks, and once only through a lost answer."""
        from sqlalchemy.exc import IntegrityError

        models = rdb_models()
        token = json.dumps(uuid.uuid4().hex)
        attr = models.StudySystemAttributeModel

        def attempt(_first: bool) -> int:
            with session_scope(self) as session:
                # The study's row lock queues the takers on a server, and makes a retry wait
                # for an earlier attempt whose commit is still in flight.
                models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
                taken = {
                    int(key.removeprefix(START_ATTR_PREFIX)): value
                    for key, value in session.query(attr.key, attr.value_json).filter(
                        attr.study_id == study_id, attr.key.like(f"{START_ATTR_PREFIX}%")
                    )
                }
                mine = [number for number, value in taken.items() if value == token]
                if mine:
                    return mine[0]  # an earlier attempt landed; only its answer was lost
                number = max(taken, default=-1) + 1
                key = f"{START_ATTR_PREFIX}{number}"
                session.add(attr(study_id=study_id, key=key, value_json=token))
                return number

        for _ in range(START_NUMBER_ATTEMPTS - 1):
            try:
                return retry_checked(attempt)
            except IntegrityError:
                time.sleep(0.01)  # another process took that number: the next is free
        return retry_checked(attempt)
