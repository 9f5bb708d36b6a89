"""The storage URL: resolved in one place, in this order: the --storage flag, then HPSEARCH_STORAGE,
then `sqlite:///storage/hpsearch.db`. A URL is only ever shown with its password hidden."""

from __future__ import annotations

import os
import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from hpsearch.errors import StorageError

DEFAULT_STORAGE = "sqlite:///storage/hpsearch.db"
STORAGE_ENV = "HPSEARCH_STORAGE"

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


def sqlite_path(url: URL) -> str | None:
    """The database file of a SQLite URL; None for another backend or an in-memory database."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database
