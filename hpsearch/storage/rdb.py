"""The study storage: Optuna's RDB storage over SQLAlchemy, SQLite by default, PostgreSQL or MySQL.

Opened with heartbeats (a trial whose worker died is found, failed and re-run in one transaction,
rerun.py; not by Optuna's retry callback, which copies the dead trial's history into its re-run
and queues it apart from the FAIL), WAL and fast commits on SQLite, pre-pinged connections on a
server, and retries through outages (retry.py) for every call that is safe to repeat. The writes
that are not (creating a trial, setting its state) check before they re-do.
"""

from __future__ import annotations

import os
import sqlite3
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL

from hpsearch.errors import StorageError
from hpsearch.storage.resilient import resilient_storage_class
from hpsearch.storage.retry import driver_error
from hpsearch.storage.url import EXTRAS, redact, sqlite_path

DURABLE_COMMITS_ENV = "HPSEARCH_DURABLE_COMMITS"
SQLITE_BUSY_TIMEOUT_S = 60
HEARTBEAT_INTERVAL_S = 10  # until the study's spec is read; see apply_heartbeat
GRACE_PERIOD_S = 60
MAX_LOST_RERUNS = 3


def open_storage(url: URL, *, must_exist: bool = False):
    """An RDBStorage with heartbeats, or a StorageError that says what is wrong in one line.

    `must_exist`: for commands that only read or join a study; a SQLite file that is not there is
    an error rather than a new, empty database.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    engine_kwargs: dict = {}
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        if must_exist and path is not None and not Path(path).exists():
            raise StorageError(
                f"no storage at {path}; run `hpsearch run --study NAME` first, or pass --storage "
                "(or set HPSEARCH_STORAGE) to the study's database"
            )
        _prepare_sqlite(url)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        engine_kwargs["pool_pre_ping"] = True  # a connection dropped by a DB restart is replaced
    try:
        storage = _create_rdb_storage(url, engine_kwargs)
        storage.max_lost_reruns = MAX_LOST_RERUNS
        if backend == "sqlite" and not os.environ.get(DURABLE_COMMITS_ENV):
            _sqlite_commits_without_fsync(storage.engine)
        return storage
    except (ImportError, ModuleNotFoundError):
        extra = EXTRAS.get(backend)
        fix = f"pip install 'hpsearch[{extra}]'" if extra else "install its SQLAlchemy driver"
        raise StorageError(f"no database driver for {redact(url)}; {fix}") from None
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise StorageError(f"cannot open storage {redact(url)}: {_reason(e, url)}") from None


@contextmanager
def closing_storage(url: URL, *, must_exist: bool = False) -> Iterator:
    """open_storage for a block, its connections closed at the end of it.

    An RDBStorage sits in reference cycles: dropped, its pooled connections stay open until the
    garbage collector's rare full pass. A process that opens one storage per trial or per poll
    (a distillation study reading its teacher's) would hold a server's connections by the dozen
    (PostgreSQL's default max_connections is 100, shared by every worker).
    """
    storage = open_storage(url, must_exist=must_exist)
    try:
        yield storage
    finally:
        storage.engine.dispose()


def _create_rdb_storage(url: URL, engine_kwargs: dict):
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    # Two processes opening a new database at once both create its schema: the loser hits a
    # duplicate key, a table that "already exists", or SQLite's immediate "database is locked" (a
    # reader upgrading to a writer is refused without waiting), and finds the schema next time.
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                # Heartbeats have been "experimental" since Optuna 2.8; they keep trials honest.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return resilient_storage_class()(
                    url.render_as_string(hide_password=False),
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=GRACE_PERIOD_S,
                )
        except (IntegrityError, OperationalError) as e:
            lost_race = isinstance(e, IntegrityError) or any(
                sign in str(e) for sign in ("database is locked", "already exists")
            )
            if not lost_race or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def _prepare_sqlite(url: URL) -> None:
    """Create the file's folder and switch it to WAL, so workers and a dashboard can share it."""
    if sqlite_path(url) is None:
        return
    path = Path(sqlite_path(url))
    if path.is_dir():
        raise StorageError(
            f"storage {redact(url)} is a directory; name a file, e.g. {path}/hpsearch.db"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as connection:
            # WAL lets readers (a dashboard, `status`) run while a worker writes; it is a property
            # of the file, so setting it once covers every later connection.
            connection.execute("PRAGMA journal_mode=WAL")
    except (OSError, sqlite3.Error) as e:
        raise StorageError(f"cannot open storage {redact(url)}: {e}") from None


def _sqlite_commits_without_fsync(engine) -> None:
    """synchronous=NORMAL on every connection: in WAL mode a commit no longer waits for an fsync.

    A trial makes about ten commits, and on SQLite the fsyncs were most of Optuna's own per-trial
    cost. The database stays consistent through any crash; a power cut or OS crash may lose the
    last commits, which hpsearch recovers from as from a killed worker (the trial is re-run).
    HPSEARCH_DURABLE_COMMITS=1 keeps every commit durable. (PostgreSQL's synchronous_commit=off,
    the same trade there, measured no faster on a loopback server, so it is not made.)
    """
    from sqlalchemy import event

    def on_connect(connection, _record) -> None:
        connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened while the schema was checked had the default


def _reason(error: Exception, url: URL) -> str:
    text = " ".join(str(driver_error(error)).split())
    password = url.password
    if password:
        text = text.replace(str(password), "***")
    return text[:300]


def apply_heartbeat(storage, heartbeat) -> None:
    """Use the study's heartbeat settings; RDBStorage reads these attributes at each use, and a lost
    trial's re-run is bounded by `max_retries` (rerun.py)."""
    storage.heartbeat_interval = heartbeat.interval
    storage.grace_period = heartbeat.grace_period
    storage.max_lost_reruns = heartbeat.max_retries
