"""The storage URL: resolved in one place, in this order: the --storage flag, then HPSEARCH_STORAGE,
then `sqlite:///storage/hpsearch.db`. A URL is only ever shown with its password hidden.

The database password may come apart from the URL, from HPSEARCH_STORAGE_PASSWORD or from the file
HPSEARCH_STORAGE_PASSWORD_FILE names (a Kubernetes Secret mounted as a file, a SLURM user's
`chmod 600` file): a URL on a command line is visible to every user of the machine through `ps`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from hpsearch.errors import StorageError

DEFAULT_STORAGE = "sqlite:///storage/hpsearch.db"
STORAGE_ENV = "HPSEARCH_STORAGE"
PASSWORD_ENV = "HPSEARCH_STORAGE_PASSWORD"
PASSWORD_FILE_ENV = "HPSEARCH_STORAGE_PASSWORD_FILE"

# The drivers hpsearch installs (extras postgres and mysql), used where a URL names none.
DEFAULT_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}
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
    password = _password_apart()
    if password is not None:
        # The same password twice is no conflict: a worker's children get the URL it resolved.
        if url.password is not None and url.password != password:
            raise StorageError(
                f"the storage URL {redact(url)} holds a password and {PASSWORD_FILE_ENV} or "
                f"{PASSWORD_ENV} gives another; keep one of them"
            )
        url = url.set(password=password)
    return url


def _password_apart() -> str | None:
    """The password given beside the URL: the file's first line, or the variable; else None."""
    path = os.environ.get(PASSWORD_FILE_ENV)
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise StorageError(
                f"{PASSWORD_FILE_ENV}={path}: cannot read it ({e.strerror})"
            ) from None
        except UnicodeDecodeError:
            raise StorageError(f"{PASSWORD_FILE_ENV}={path}: not a text file") from None
        if not lines or not lines[0]:
            raise StorageError(
                f"{PASSWORD_FILE_ENV}={path}: the file is empty; "
                "write the password on its first line"
            )
        if os.environ.get(PASSWORD_ENV):
            raise StorageError(
                f"both {PASSWORD_FILE_ENV} and {PASSWORD_ENV} are set; keep one of them"
            )
        return lines[0]
    return os.environ.get(PASSWORD_ENV) or None


def redact(url: URL | str) -> str:
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            # Unparseable, but it may still hold "user:password@": mask what sits there.
            return re.sub(r"(://[^/@:]*:)[^@]*@", r"\1***@", url)
    return url.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> str | None:
    """The database file of a SQLite URL; None for another backend or an in-memory database."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database
