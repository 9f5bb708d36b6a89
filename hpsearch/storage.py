"""The study storage: Optuna's RDB storage over SQLAlchemy, SQLite by default, PostgreSQL or MySQL.

The URL is resolved in one place, in this order: the --storage flag, then HPSEARCH_STORAGE, then
`sqlite:///storage/hpsearch.db`. A URL is only ever shown with its password hidden.
"""

from __future__ import annotations

import os
import re
import sqlite3
import warnings
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from hpsearch.errors import StorageError

DEFAULT_STORAGE = "sqlite:///storage/hpsearch.db"
STORAGE_ENV = "HPSEARCH_STORAGE"
ARTIFACTS_ENV = "HPSEARCH_ARTIFACTS"
SQLITE_BUSY_TIMEOUT_S = 60
HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 60

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
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import SQLAlchemyError

    engine_kwargs: dict = {}
    backend = url.get_backend_name()
    if backend == "sqlite":
        _prepare_sqlite(url)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        engine_kwargs["pool_pre_ping"] = True  # a connection dropped by a DB restart is replaced
    try:
        with warnings.catch_warnings():
            # Heartbeats have been "experimental" since Optuna 2.8; they are what keeps trials honest.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url.render_as_string(hide_password=False),
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=GRACE_PERIOD_S,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
            )
    except (ImportError, ModuleNotFoundError):
        extra = EXTRAS.get(backend)
        fix = f"pip install 'hpsearch[{extra}]'" if extra else "install its SQLAlchemy driver"
        raise StorageError(f"no database driver for {redact(url)}; {fix}") from None
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        raise StorageError(f"cannot open storage {redact(url)}: {_reason(e, url)}") from None


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


def _reason(error: Exception, url: URL) -> str:
    origin = getattr(error, "orig", None) or error
    text = " ".join(str(origin).split())
    password = url.password
    if password:
        text = text.replace(str(password), "***")
    return text[:300]
