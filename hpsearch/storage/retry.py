"""Retries through a database outage, and only through one.

A connection-level failure (the server restarting, a network cut, a dropped connection, a lock
that timed out) is retried with backoff for up to OUTAGE_TOLERANCE_S. Anything else (a number out
of its column's range, invalid data, a missing table) is permanent: it is raised at once, with the
driver's own reason. Optuna wraps both kinds in the same StorageInternalError, so the decision is
made on the SQLAlchemy error underneath it.

Only writes that are safe to repeat may be wrapped here: a write whose commit may have landed
before its acknowledgement was lost must check before it re-does (checked_writes.py). Which of
Optuna's calls are retried blindly, and why each may be, is safe_retries.py.
"""

from __future__ import annotations

import functools
import logging
import os

# How long a worker rides out a database outage (restart, failover) before it gives up.
OUTAGE_TOLERANCE_S = float(os.environ.get("HPSEARCH_OUTAGE_TOLERANCE", "180"))
# SQLite raises OperationalError for permanent problems too ("no such table", "readonly
# database"); of its messages these are the waits worth riding out.
SQLITE_TRANSIENT = ("database is locked", "database table is locked", "disk i/o error")

log = logging.getLogger("hpsearch.storage")


def driver_error(error: BaseException) -> BaseException:
    """The driver's own error: Optuna's StorageInternalError wraps SQLAlchemy's, which wraps it."""
    if not hasattr(error, "orig") and error.__cause__ is not None:
        error = error.__cause__
    return getattr(error, "orig", None) or error


def is_transient(error: BaseException) -> bool:
    """True for a connection-level failure that a later attempt may get past."""
    import sqlite3

    from sqlalchemy import exc

    cause = error
    if not isinstance(cause, exc.SQLAlchemyError) and isinstance(
        error.__cause__, exc.SQLAlchemyError
    ):
        cause = error.__cause__  # Optuna's StorageInternalError ... from e
    if isinstance(cause, exc.PendingRollbackError):
        # The aftermath of an earlier failure on the same connection, raised while handling it:
        # Optuna's _get_trials catches OperationalError (meaning "too many IN values") and queries
        # again on the connection that just died. It is as transient as the failure before it; the
        # retry gets a fresh session, since Optuna rolls back and closes this one.
        earlier = cause.__context__
        return earlier is not None and earlier is not cause and is_transient(earlier)
    if isinstance(cause, exc.DBAPIError) and cause.connection_invalidated:
        return True
    if isinstance(cause, (exc.DisconnectionError, exc.TimeoutError, exc.InterfaceError)):
        return True
    if isinstance(cause, exc.OperationalError):
        if isinstance(cause.orig, sqlite3.Error):
            return any(sign in str(cause.orig).lower() for sign in SQLITE_TRANSIENT)
        return True
    return False


def retry_through_outage(function):
    """Retry `function` with exponential backoff while the database is unreachable.

    A dropped connection is replaced by the pool's pre-ping; what is retried is the call that was
    under way when the database went away. After OUTAGE_TOLERANCE_S the last error is raised.
    The first attempt is a plain call: tenacity's bookkeeping costs time on every call
    (BENCHMARKS.md, "Orchestration overhead"), and a trial makes dozens of storage calls, so it is
    paid only once something has failed.
    """
    import tenacity

    retrying = tenacity.retry(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential(multiplier=0.5, max=10),
        stop=tenacity.stop_after_delay(OUTAGE_TOLERANCE_S),
        before_sleep=_log_retry,
        reraise=True,
    )(function)

    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as e:
            if not is_transient(e):
                raise
            return retrying(*args, **kwargs)

    return call


def retry_checked(attempt):
    """`attempt(first=True)`, then, after each connection-level failure, `attempt(first=False)` with
    backoff: a later attempt must first check whether an earlier one landed before it re-does it."""
    import tenacity

    for state in tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential(multiplier=0.5, max=10),
        stop=tenacity.stop_after_delay(OUTAGE_TOLERANCE_S),
        before_sleep=_log_retry,
        reraise=True,
    ):
        with state:
            return attempt(state.retry_state.attempt_number == 1)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def _log_retry(state) -> None:
    from hpsearch.errors import first_line

    origin = driver_error(state.outcome.exception())
    log.warning(
        "storage unreachable (%s: %s); retrying in %.1fs",
        type(origin).__name__,
        first_line(origin, 200),
        state.next_action.sleep,
    )


def describe_storage_error(error: BaseException) -> str | None:
    """One line for an error the database raised (Optuna's StorageInternalError or SQLAlchemy's),
    naming the driver's reason; None for any other error."""
    from sqlalchemy.exc import SQLAlchemyError

    from hpsearch.errors import first_line

    if type(error).__name__ != "StorageInternalError" and not isinstance(error, SQLAlchemyError):
        return None
    origin = driver_error(error)
    return f"the storage refused a write or read: {type(origin).__name__}: {first_line(origin)}"
