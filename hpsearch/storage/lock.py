"""A lock per study shared by every worker on every machine, so trials start one at a time.

Starting a trial is "count the budget, then create the trial". The budget does not rest on this
lock: the storage counts again in the transaction that creates the trial and refuses one beyond
the budget (budget_fence.py). The lock keeps the workers from counting and creating in a crowd,
where all but one would be refused. Every other update several workers make (the kept model's
pointer, the stored spec and its changes, the final trainings) is one transaction of the storage
and takes no lock (best_model.py, record.py).

The lock lives where the workers meet, the database: a PostgreSQL advisory lock, a MySQL/MariaDB
named lock, or, for SQLite (one machine by nature), a lock file beside the database file. It is held
only while a trial is being created, milliseconds. A server lock is not fenced: the server frees it
when its session has been silent for the hold limit, and a holder that stalled that long (SIGSTOP,
a swap storm, a network cut) still believes it holds it; nothing but the crowd control above rests
on it.

The locks of a process on one database share one engine, which keeps one session between holds; a
lock taken while another is held gets a session of its own for that time (closed at release).
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import TYPE_CHECKING

import sqlalchemy
from filelock import FileLock
from sqlalchemy.engine import URL

from hpsearch.errors import StorageError
from hpsearch.storage.retry import retry_through_outage
from hpsearch.storage.url import sqlite_path

if TYPE_CHECKING:
    from typing import Self

LOCK_TIMEOUT_S = 300
# Longest a holder may keep the lock without a word to the server: its session is then ended and
# the lock freed. A worker whose link died while it held the lock (a network partition, a machine
# lost) leaves a session the server may believe alive for hours (TCP keepalive); without this every
# other worker would wait on it. The lock is held for milliseconds; the margin is for a busy server.
LOCK_HOLD_LIMIT_S = 120
# Operators may set another hold limit (whole seconds, at least 1), e.g. shorter where a lost
# machine should not stall the other workers for two minutes; the tests use it to free a stalled
# holder's lock within seconds.
HOLD_LIMIT_ENV = "HPSEARCH_LOCK_HOLD_LIMIT"
# Sessions beyond the one kept, for locks held at the same time in one process (each purpose, and
# tests that play several workers); they are closed at release.
LOCK_OVERFLOW_SESSIONS = 8

_engines: dict[str, sqlalchemy.Engine] = {}
_engines_guard = threading.Lock()


def _lock_engine(url: URL) -> sqlalchemy.Engine:
    """This process's engine for the locks on the database at `url`, created on first use."""
    key = url.render_as_string(hide_password=False)
    with _engines_guard:
        if key not in _engines:
            _engines[key] = sqlalchemy.create_engine(
                url, pool_size=1, max_overflow=LOCK_OVERFLOW_SESSIONS, pool_pre_ping=True
            )
        return _engines[key]


class StudyLock:
    def __init__(self, url: URL, study_name: str, purpose: str = "trials"):
        self._dialect = url.get_backend_name()
        # The trial lock keeps the name it had before purposes existed: old and new workers agree.
        scope = study_name if purpose == "trials" else f"{study_name}:{purpose}"
        digest = hashlib.sha256(f"hpsearch:{scope}".encode()).digest()
        self._key = int.from_bytes(
            digest[:8], "big", signed=True
        )  # pg advisory locks take a bigint
        self._name = f"hpsearch-{digest.hex()[:40]}"  # MySQL lock names are at most 64 characters
        self._held = threading.Event()
        self._hold_limit_s = hold_limit_s()  # a bad HPSEARCH_LOCK_HOLD_LIMIT fails before any work
        if self._dialect == "sqlite":
            suffix = ".lock" if purpose == "trials" else f".{purpose}.lock"
            self._file_lock = FileLock(f"{sqlite_path(url) or ':memory:'}{suffix}")
        else:
            # A session-level lock belongs to its connection, checked out from acquire to release.
            self._engine = _lock_engine(url)

    @property
    def held(self) -> bool:
        return self._held.is_set()

    @retry_through_outage
    def acquire(self) -> None:
        if self._dialect == "sqlite":
            self._file_lock.acquire(timeout=LOCK_TIMEOUT_S)
        else:
            self._connection = self._engine.connect()
            try:
                self._take_server_lock()
            except BaseException:
                self._connection.close()
                raise
        self._held.set()

    def _take_server_lock(self) -> None:
        if self._dialect == "postgresql":
            # The session holds the lock "idle in transaction": the server ends it after the hold
            # limit. lock_timeout bounds the wait, as GET_LOCK's timeout does on MySQL. (Both are
            # undone with the transaction at release: the pooled connection keeps no setting.)
            self._connection.execute(
                sqlalchemy.text(
                    "SELECT set_config('idle_in_transaction_session_timeout', :hold, false), "
                    "set_config('lock_timeout', :wait, false)"
                ),
                {
                    "hold": f"{self._hold_limit_s * 1000:.0f}",
                    "wait": f"{LOCK_TIMEOUT_S * 1000:.0f}",
                },
            )
            self._connection.execute(
                sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key}
            )
            return
        # MySQL frees a named lock when its session ends; wait_timeout ends a silent session. An
        # idle pooled lock connection is ended too, and replaced by the pool's pre-ping.
        self._connection.execute(
            sqlalchemy.text(f"SET SESSION wait_timeout = {self._hold_limit_s}")
        )
        got = self._connection.execute(
            sqlalchemy.text("SELECT GET_LOCK(:n, :t)"), {"n": self._name, "t": LOCK_TIMEOUT_S}
        ).scalar()
        if got != 1:
            raise TimeoutError(f"no lock on the study after {LOCK_TIMEOUT_S}s")

    def release(self) -> None:
        if not self.held:
            return
        self._held.clear()
        if self._dialect == "sqlite":
            self._file_lock.release()
            return
        try:
            if self._dialect == "postgresql":
                self._connection.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key}
                )
            else:
                self._connection.execute(
                    sqlalchemy.text("SELECT RELEASE_LOCK(:n)"), {"n": self._name}
                )
        except sqlalchemy.exc.SQLAlchemyError:
            # Drop the session: the server frees a dead session's locks, so none outlives this.
            self._connection.invalidate()
        finally:
            self._connection.close()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def hold_limit_s() -> int:
    """The hold limit in whole seconds: HPSEARCH_LOCK_HOLD_LIMIT if set, else LOCK_HOLD_LIMIT_S."""
    text = os.environ.get(HOLD_LIMIT_ENV)
    if text is None:
        return int(LOCK_HOLD_LIMIT_S)
    try:
        seconds = int(text)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise StorageError(f"{HOLD_LIMIT_ENV} must be a whole number of seconds >= 1, got {text!r}")
    return seconds
