"""Retries only where a retry is safe: outages are ridden out, permanent errors fail at once, and a
write whose commit landed but whose answer was lost is never repeated.

The server tests run when HPSEARCH_TEST_POSTGRES / HPSEARCH_TEST_MYSQL are set (.ci/run sets both);
then a server that does not answer fails the test rather than skipping it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid

import optuna
import pytest
from optuna.exceptions import StorageInternalError
from sqlalchemy import exc
from sqlalchemy.engine import make_url

from hpsearch.storage import describe_storage_error, is_transient, open_storage, resolve_storage_url
from tests.tcp_proxy import CuttableProxy

SERVERS = ["HPSEARCH_TEST_POSTGRES", "HPSEARCH_TEST_MYSQL"]


def server_url(variable: str) -> str:
    url = os.environ.get(variable)
    if not url:
        pytest.skip(f"{variable} is not set")
    return resolve_storage_url(url).render_as_string(hide_password=False)


def wrapped(driver_error: Exception, kind=exc.OperationalError) -> StorageInternalError:
    """An error as Optuna raises it: a StorageInternalError from SQLAlchemy's, from the driver's."""
    try:
        try:
            raise kind("SELECT 1", {}, driver_error)
        except exc.SQLAlchemyError as e:
            raise StorageInternalError("An exception is raised during the commit.") from e
    except StorageInternalError as e:
        return e


def test_connection_failures_are_transient_and_data_errors_are_not():
    # A server gone, a connection dropped: worth riding out.
    assert is_transient(wrapped(ConnectionRefusedError("connection refused")))
    assert is_transient(exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")))
    assert is_transient(wrapped(sqlite3.OperationalError("database is locked")))
    # Invalid data, a missing table, a broken constraint: the same error again after any wait.
    assert not is_transient(
        wrapped(Exception("value too long for type character varying(512)"), exc.DataError)
    )
    assert not is_transient(wrapped(sqlite3.OperationalError("no such table: trials")))
    assert not is_transient(wrapped(Exception("duplicate key"), exc.IntegrityError))
    assert not is_transient(ValueError("not a database error at all"))


def test_a_pending_rollback_is_as_transient_as_the_failure_before_it():
    def query_again() -> None:
        raise exc.PendingRollbackError("Can't reconnect until invalid transaction is rolled back")

    def raised_while_handling(earlier: Exception) -> exc.PendingRollbackError:
        # As in Optuna's _get_trials: the handler of the earlier failure queries again on the dead
        # connection, and Python keeps the earlier failure as the new error's __context__.
        try:
            try:
                raise earlier
            except (exc.InterfaceError, ValueError):
                query_again()
        except exc.PendingRollbackError as e:
            return e

    assert is_transient(
        raised_while_handling(exc.InterfaceError("SELECT 1", {}, Exception("closed")))
    )
    assert not is_transient(raised_while_handling(ValueError("a bug, not an outage")))
    assert not is_transient(exc.PendingRollbackError("rolled back with no failure before it"))


@pytest.fixture
def study_on(request):
    """A fresh study on the named server, deleted afterwards: (url, name)."""
    url = server_url(request.param)
    name = f"test-{uuid.uuid4().hex[:10]}"
    optuna.create_study(
        study_name=name, storage=open_storage(resolve_storage_url(url)), direction="maximize"
    )
    yield url, name
    optuna.delete_study(study_name=name, storage=open_storage(resolve_storage_url(url)))


@pytest.mark.parametrize("study_on", SERVERS, indirect=True, ids=["postgresql", "mysql"])
def test_a_permanent_error_fails_at_once_with_its_reason(study_on, caplog):
    url, name = study_on
    storage = open_storage(resolve_storage_url(url))
    trial = optuna.load_study(study_name=name, storage=storage).ask()
    # Evaluation steps are a 32-bit INTEGER column: the server refuses 2**40, now and every time.
    # (Not an over-long string: with SQLAlchemy 2.0.0's bind casts PostgreSQL truncates one
    # silently.)
    with (
        caplog.at_level(logging.WARNING, logger="hpsearch.storage"),
        pytest.raises(StorageInternalError) as caught,
    ):
        storage.set_trial_intermediate_value(trial._trial_id, 2**40, 0.5)
    # Not retried: no "storage unreachable" wait, and the reason shown is the server's own.
    assert [r for r in caplog.records if "unreachable" in r.getMessage()] == []
    reason = describe_storage_error(caught.value)
    assert reason.startswith("the storage refused a write or read: ")
    assert "out of range" in reason.lower()


@pytest.mark.parametrize("study_on", SERVERS, indirect=True, ids=["postgresql", "mysql"])
def test_a_commit_whose_answer_is_lost_is_not_repeated(study_on):
    url, name = study_on
    server = make_url(url)
    proxy = CuttableProxy(
        server.host or "127.0.0.1", server.port or (5432 if "postgres" in url else 3306)
    )
    try:
        via_proxy = open_storage(
            resolve_storage_url(
                server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            )
        )
        direct = open_storage(resolve_storage_url(url))
        study = optuna.load_study(study_name=name, storage=via_proxy)
        study_id = direct.get_study_id_from_name(name)

        # The trial is created on the server; the client sees its connection die instead of "done".
        cut = proxy.cut_after_commit(b"INSERT INTO trials (")
        trial = study.ask()
        assert cut.is_set()
        # The retry found the trial it had made rather than making a second one.
        (stored,) = direct.get_all_trials(study_id)
        assert stored.number == trial.number == 0

        # Finishing it, with that answer lost too: recorded once, no UpdateFinishedTrialError.
        cut = proxy.cut_after_commit(b"UPDATE trials SET state")
        study.tell(trial, 0.5)
        assert cut.is_set()
        (stored,) = direct.get_all_trials(study_id)
        assert stored.state == optuna.trial.TrialState.COMPLETE and stored.value == 0.5
    finally:
        proxy.close()


@pytest.mark.parametrize("study_on", SERVERS[:1], indirect=True, ids=["postgresql"])
def test_a_study_whose_creation_answer_is_lost_is_created_once_with_its_attributes(study_on):
    from hpsearch.storage import create_study

    url, _ = study_on
    server = make_url(url)
    proxy = CuttableProxy(server.host or "127.0.0.1", server.port or 5432)
    name = f"test-{uuid.uuid4().hex[:10]}"
    try:
        via_proxy = open_storage(
            resolve_storage_url(
                server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            )
        )
        cut = proxy.cut_after_commit(b"INSERT INTO studies (")
        create_study(via_proxy, name, "maximize", {"hpsearch_spec": {"model": "m"}})
        assert cut.is_set()
        # Created once, spec and all, and the retry knew the study as its own (no
        # DuplicatedStudyError).
        direct = open_storage(resolve_storage_url(url))
        assert [s.study_name for s in direct.get_all_studies()].count(name) == 1
        assert direct.get_study_user_attrs(direct.get_study_id_from_name(name)) == {
            "hpsearch_spec": {"model": "m"}
        }
        # Another process creating it afterwards is told it exists.
        with pytest.raises(optuna.exceptions.DuplicatedStudyError):
            create_study(direct, name, "maximize", {})
    finally:
        proxy.close()
        optuna.delete_study(study_name=name, storage=open_storage(resolve_storage_url(url)))


@pytest.fixture
def optuna_warnings():
    """Optuna's warnings reach caplog whatever ran before in this process: an in-process trial
    (trial/load.py) turns Optuna's verbosity down to errors, and Optuna's logger may stop its
    records at itself (propagate False)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.enable_propagation()
    yield
    optuna.logging.disable_propagation()
    optuna.logging.set_verbosity(verbosity)


@pytest.mark.parametrize("study_on", SERVERS[:1], indirect=True, ids=["postgresql"])
def test_a_cut_between_the_queries_of_a_read_is_ridden_out(study_on, caplog, optuna_warnings):
    """Optuna's trial read catches OperationalError (for "too many IN values") and queries again on
    the connection that just died, which raises PendingRollbackError: that too is an outage."""
    import threading

    from sqlalchemy import event

    url, name = study_on
    server = make_url(url)
    proxy = CuttableProxy(server.host or "127.0.0.1", server.port or 5432)
    try:
        storage = open_storage(
            resolve_storage_url(
                server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            )
        )
        study = optuna.load_study(study_name=name, storage=storage)
        study.tell(study.ask(), 0.5)
        armed = threading.Event()
        armed.set()

        @event.listens_for(storage.engine, "before_cursor_execute")
        def cut_before_the_trials_query(conn, cursor, statement, *args):
            # The study has been looked up on this connection; the database vanishes before the
            # trials are read, and comes back a second later.
            if (
                armed.is_set()
                and "FROM trials" in statement
                and "ORDER BY trials.trial_id" in statement
            ):
                armed.clear()
                proxy.cut()
                threading.Timer(1.0, proxy.restore).start()

        with caplog.at_level(logging.WARNING):
            trials = storage.get_all_trials(study._study_id)
        assert [t.value for t in trials] == [0.5]
        # The cut came where it was meant to: Optuna fell back to its second query, which failed,
        # and the read was retried until the database was back.
        messages = [r.getMessage() for r in caplog.records]
        assert any("Falling back to a slower alternative" in m for m in messages)
        assert any("storage unreachable" in m for m in messages)
    finally:
        proxy.close()


def test_blind_retries_are_an_allow_list_of_calls_safe_to_repeat():
    from optuna.storages import BaseStorage

    from hpsearch.storage.optuna_private import rdb_storage_with_hooks
    from hpsearch.storage.safe_retries import SAFE_TO_RETRY, retrying_storage_class

    checked = {"create_new_study", "create_new_trial", "set_trial_state_values"}
    # The writes that must look for their token first are never retried blindly ...
    assert not checked & set(SAFE_TO_RETRY)
    # ... each listed call exists on the storage and is wrapped, with its reason ...
    hooked = rdb_storage_with_hooks()
    for name, why in SAFE_TO_RETRY.items():
        assert why and getattr(retrying_storage_class(), name) is not getattr(hooked, name), name
    # ... and every call of Optuna's storage interface is decided one way or the other: a call a
    # later Optuna adds fails here until someone has read it and said whether it is safe.
    public = {
        n for n in vars(BaseStorage) if not n.startswith("_") and callable(getattr(BaseStorage, n))
    }
    assert public - set(SAFE_TO_RETRY) - checked == set()
