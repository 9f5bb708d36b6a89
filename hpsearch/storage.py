"""The study storage: Optuna's RDB storage over SQLAlchemy, SQLite by default, PostgreSQL or MySQL.

The URL is resolved in one place, in this order: the --storage flag, then HPSEARCH_STORAGE, then
`sqlite:///storage/hpsearch.db`. A URL is only ever shown with its password hidden.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import time
import warnings
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from hpsearch.errors import StorageError

DEFAULT_STORAGE = "sqlite:///storage/hpsearch.db"
STORAGE_ENV = "HPSEARCH_STORAGE"
ARTIFACTS_ENV = "HPSEARCH_ARTIFACTS"
DURABLE_COMMITS_ENV = "HPSEARCH_DURABLE_COMMITS"
SQLITE_BUSY_TIMEOUT_S = 60
HEARTBEAT_INTERVAL_S = 10  # until the study's spec is read; see apply_heartbeat
GRACE_PERIOD_S = 60
# How long a worker rides out a database outage (restart, failover) before it gives up.
OUTAGE_TOLERANCE_S = float(os.environ.get("HPSEARCH_OUTAGE_TOLERANCE", "180"))

# The drivers hpsearch installs (extras postgres and mysql), used where a URL names none.
DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
                   "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql"}
EXTRAS = {"postgresql": "postgres", "mysql": "mysql"}


def resolve_storage_url(flag: str | None) -> URL:
    raw = flag or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise StorageError(
            f"malformed storage URL {redact(raw)!r}; expected e.g. {DEFAULT_STORAGE} or "
            "postgresql://user@host:5432/db"
        ) from None
    if url.drivername in DEFAULT_DRIVERS:
        url = url.set(drivername=DEFAULT_DRIVERS[url.drivername])
    return url


def redact(url: URL | str) -> str:
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            # Unparseable, but it may still hold "user:password@": mask what sits there.
            return re.sub(r"(://[^/@:]*:)[^@]*@", r"\1***@", url)
    return url.render_as_string(hide_password=True)


def artifact_dir(url: URL) -> Path:
    """HPSEARCH_ARTIFACTS, else `artifacts/` beside a SQLite file, else storage/artifacts."""
    if os.environ.get(ARTIFACTS_ENV):
        return Path(os.environ[ARTIFACTS_ENV])
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).parent / "artifacts"
    return Path("storage/artifacts")


def open_storage(url: URL):
    """An RDBStorage with heartbeats, or a StorageError that says what is wrong in one line."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    engine_kwargs: dict = {}
    backend = url.get_backend_name()
    if backend == "sqlite":
        _prepare_sqlite(url)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        engine_kwargs["pool_pre_ping"] = True  # a connection dropped by a DB restart is replaced
    try:
        storage = _create_rdb_storage(url, engine_kwargs)
        if backend == "sqlite" and not os.environ.get(DURABLE_COMMITS_ENV):
            _sqlite_commits_without_fsync(storage.engine)
        return storage
    except (ImportError, ModuleNotFoundError):
        extra = EXTRAS.get(backend)
        fix = f"pip install 'hpsearch[{extra}]'" if extra else "install its SQLAlchemy driver"
        raise StorageError(f"no database driver for {redact(url)}; {fix}") from None
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise StorageError(f"cannot open storage {redact(url)}: {_reason(e, url)}") from None


def _create_rdb_storage(url: URL, engine_kwargs: dict):
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import IntegrityError, OperationalError

    # Two processes opening a new database at once both create its schema: the loser hits a
    # duplicate key, a table that "already exists", or SQLite's immediate "database is locked" (a
    # reader upgrading to a writer is refused without waiting), and finds the schema there next time.
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                # Heartbeats have been "experimental" since Optuna 2.8; they keep trials honest.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return _resilient_storage_class()(
                    url.render_as_string(hide_password=False),
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_INTERVAL_S,
                    grace_period=GRACE_PERIOD_S,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
                )
        except (IntegrityError, OperationalError) as e:
            lost_race = isinstance(e, IntegrityError) or any(
                sign in str(e) for sign in ("database is locked", "already exists"))
            if not lost_race or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


def _prepare_sqlite(url: URL) -> None:
    """Create the file's folder and switch it to WAL, so workers and a dashboard can share it."""
    if url.database in (None, "", ":memory:"):
        return
    path = Path(url.database)
    if path.is_dir():
        raise StorageError(f"storage {redact(url)} is a directory; name a file, e.g. {path}/hpsearch.db")
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


def _driver_error(error: BaseException) -> BaseException:
    """The driver's own error: Optuna's StorageInternalError wraps SQLAlchemy's, which wraps it."""
    if not hasattr(error, "orig") and error.__cause__ is not None:
        error = error.__cause__
    return getattr(error, "orig", None) or error


def _reason(error: Exception, url: URL) -> str:
    text = " ".join(str(_driver_error(error)).split())
    password = url.password
    if password:
        text = text.replace(str(password), "***")
    return text[:300]


def apply_heartbeat(storage, heartbeat) -> None:
    """Use the study's heartbeat settings; RDBStorage reads these attributes at each use."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    storage.heartbeat_interval = heartbeat.interval
    storage.grace_period = heartbeat.grace_period
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryHeartbeatStaleTrialCallback(max_retry=heartbeat.max_retries)
    storage.heartbeat_stale_trial_callback = callback
    storage.failed_trial_callback = storage.heartbeat_stale_trial_callback


def retry_through_outage(function):
    """Retry `function` with exponential backoff while the database is unreachable.

    A dropped connection is replaced by the pool's pre-ping; what is retried is the call that was
    under way when the database went away. After OUTAGE_TOLERANCE_S the last error is raised.
    The first attempt is a plain call: tenacity's bookkeeping costs ~30 us a call, and a trial
    makes dozens of storage calls, so it is paid only once something has failed.
    """
    import tenacity
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import InterfaceError, OperationalError

    retryable = (StorageInternalError, OperationalError, InterfaceError)
    retrying = tenacity.retry(
        retry=tenacity.retry_if_exception_type(retryable),
        wait=tenacity.wait_exponential(multiplier=0.5, max=10),
        stop=tenacity.stop_after_delay(OUTAGE_TOLERANCE_S),
        before_sleep=_log_retry,
        reraise=True,
    )(function)

    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except retryable:
            return retrying(*args, **kwargs)

    return call


def _log_retry(state) -> None:
    import logging

    origin = _driver_error(state.outcome.exception())
    first_line = (str(origin).strip().splitlines() or [type(origin).__name__])[0][:200]
    logging.getLogger("hpsearch.storage").warning(
        "storage unreachable (%s: %s); retrying in %.1fs", type(origin).__name__, first_line,
        state.next_action.sleep,
    )


def _backend(study):
    """The storage under Optuna's caching layer, where hpsearch's own methods live."""
    return getattr(study._storage, "_backend", study._storage)


def count_trials(study) -> int:
    """How many trials the study has, in any state, as cheaply as the storage can say."""
    backend = _backend(study)
    if hasattr(backend, "count_trials"):
        return backend.count_trials(study._study_id)
    return len(study.get_trials(deepcopy=False))


def set_user_attrs(trial, attrs: dict) -> None:
    """Several user attributes of a running trial in one transaction where the storage can do it."""
    backend = _backend(trial.study)
    if hasattr(backend, "set_trial_user_attrs"):
        backend.set_trial_user_attrs(trial._trial_id, attrs)
        return
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


@functools.cache
def _resilient_storage_class():
    """RDBStorage whose every call, heartbeats included, rides out a database outage, plus three
    savings for the worker loop: a trial count in one query, a trial's record written in one
    commit, and the stale-trial check that Optuna runs before every trial done at most once per
    heartbeat interval."""
    from optuna.storages import BaseStorage, RDBStorage
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    names = [n for n in vars(BaseStorage) if not n.startswith("_") and callable(getattr(BaseStorage, n))]
    # Optuna's caching layer and heartbeat call these private methods of the RDB storage directly.
    names += ["record_heartbeat", "_get_stale_trial_ids", "_get_trials", "_create_new_trial",
              "_get_best_trial_id", "_set_trial_param"]
    methods = {name: retry_through_outage(getattr(RDBStorage, name)) for name in names if hasattr(RDBStorage, name)}
    retrying_storage = type("RetryingRDBStorage", (RDBStorage,), methods)

    class ResilientRDBStorage(retrying_storage):
        def __init__(self, *args, **kwargs):
            self._stale_checked: dict[int, float] = {}
            super().__init__(*args, **kwargs)

        @retry_through_outage
        def count_trials(self, study_id: int) -> int:
            """Every trial of the study, whatever its state: one COUNT, not a read of them all."""
            from sqlalchemy import func

            with _create_scoped_session(self.scoped_session) as session:
                return session.query(func.count(models.TrialModel.trial_id)).filter(
                    models.TrialModel.study_id == study_id).scalar()

        @retry_through_outage
        def set_trial_user_attrs(self, trial_id: int, attrs: dict) -> None:
            with _create_scoped_session(self.scoped_session, True) as session:
                for key, value in attrs.items():
                    self._set_trial_attr_without_commit(
                        session, models.TrialUserAttributeModel, trial_id, key, value
                    )

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            # A trial goes stale only after a grace period without heartbeats; looking again
            # sooner than one heartbeat interval later finds nothing new, and costs two queries.
            now = time.monotonic()
            if now - self._stale_checked.get(study_id, float("-inf")) < (self.heartbeat_interval or 0):
                return []
            self._stale_checked[study_id] = now
            return super()._get_stale_trial_ids(study_id)

    return ResilientRDBStorage
