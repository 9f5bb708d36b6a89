"""The study lock on a real server: a holder that goes silent does not block the others for ever.

A worker whose link to the database died while it held the lock (a network partition, a machine
lost) leaves a session the server may believe alive for hours. The server ends it after the hold
limit, and the next worker gets the lock.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest

from hpsearch.errors import StorageError
from hpsearch.storage import lock as lock_module
from hpsearch.storage import resolve_storage_url
from hpsearch.storage.lock import StudyLock


@pytest.mark.parametrize("variable", ["HPSEARCH_TEST_POSTGRES", "HPSEARCH_TEST_MYSQL"])
def test_a_silent_holder_loses_the_lock_after_the_hold_limit(variable, monkeypatch):
    if not os.environ.get(variable):
        pytest.skip(f"{variable} is not set")
    url = resolve_storage_url(os.environ[variable])
    monkeypatch.setattr(lock_module, "LOCK_HOLD_LIMIT_S", 2)
    name = f"test-{uuid.uuid4().hex[:10]}"
    silent = StudyLock(url, name)
    silent.acquire()  # ...and never a word again, as a worker cut off mid-lock
    other = StudyLock(url, name)
    got = threading.Event()

    def take():
        other.acquire()
        got.set()

    taker = threading.Thread(target=take, daemon=True)
    taker.start()
    try:
        # The server ended the silent session after 2 s, and with it the lock.
        assert got.wait(timeout=60), "the other worker is still waiting on a silent holder's lock"
        assert other.held
    finally:
        other.release()
        silent.release()  # its session is gone: releasing is a no-op, not an error
    assert not silent.held and not other.held


@pytest.mark.parametrize("variable", ["HPSEARCH_TEST_POSTGRES", "HPSEARCH_TEST_MYSQL"])
def test_the_lock_is_exclusive_while_held(variable):
    if not os.environ.get(variable):
        pytest.skip(f"{variable} is not set")
    url = resolve_storage_url(os.environ[variable])
    name = f"test-{uuid.uuid4().hex[:10]}"
    first, second = StudyLock(url, name), StudyLock(url, name)
    got = threading.Event()
    with first:
        taker = threading.Thread(target=lambda: (second.acquire(), got.set()), daemon=True)
        taker.start()
        assert not got.wait(timeout=3)  # a live holder keeps it
    assert got.wait(timeout=30)
    second.release()


@pytest.mark.parametrize("variable", ["HPSEARCH_TEST_POSTGRES", "HPSEARCH_TEST_MYSQL"])
def test_an_operator_sets_the_hold_limit(variable, monkeypatch):
    if not os.environ.get(variable):
        pytest.skip(f"{variable} is not set")
    url = resolve_storage_url(os.environ[variable])
    monkeypatch.setenv("HPSEARCH_LOCK_HOLD_LIMIT", "2")
    name = f"test-{uuid.uuid4().hex[:10]}"
    silent, other = StudyLock(url, name), StudyLock(url, name)
    silent.acquire()
    started = time.monotonic()
    other.acquire()
    waited = time.monotonic() - started
    other.release()
    silent.release()
    # The server freed the silent holder's lock after the operator's 2 s, not the default 120 s.
    assert 1.5 < waited < 30


@pytest.mark.parametrize("value", ["0", "1.5", "two"])
def test_a_hold_limit_that_is_no_whole_number_of_seconds_is_refused(value, monkeypatch, tmp_path):
    monkeypatch.setenv("HPSEARCH_LOCK_HOLD_LIMIT", value)
    url = resolve_storage_url(f"sqlite:///{tmp_path / 'hp.db'}")
    # The mistake is named with the value given, before any lock is taken.
    with pytest.raises(StorageError) as caught:
        StudyLock(url, "study")
    assert caught.value.message == (
        f"HPSEARCH_LOCK_HOLD_LIMIT must be a whole number of seconds >= 1, got {value!r}"
    )
