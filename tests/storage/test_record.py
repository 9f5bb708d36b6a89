"""A study's list attribute appended to by processes at once, on SQLite, PostgreSQL and MariaDB:
every item lands, also when one appender is stopped inside its update (SIGSTOP: a frozen VM, a
long pause) and the others go on meanwhile.

The server tests run when HPSEARCH_TEST_POSTGRES / HPSEARCH_TEST_MYSQL are set (.ci/run sets both).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest

from hpsearch.storage import (
    append_study_user_attr,
    open_storage,
    resolve_storage_url,
    study_user_attr_list,
    update_study_user_attrs,
)
from hpsearch.storage.record import UPDATE_DELAY_ENV
from tests.storage.conftest import BACKENDS, backend_url

N_PROCESSES, N_ITEMS = 2, 25

APPENDER = """
import sys, time
from pathlib import Path
import optuna
from hpsearch.storage import append_study_user_attr, open_storage, resolve_storage_url

url, name = resolve_storage_url(sys.argv[1]), sys.argv[2]
who, rundir = int(sys.argv[3]), Path(sys.argv[4])
study = optuna.load_study(study_name=name, storage=open_storage(url))
(rundir / f"ready-{who}").touch()
while not (rundir / "go").exists():  # every process starts appending at the same moment
    time.sleep(0.005)
for i in range(int(sys.argv[5])):
    append_study_user_attr(study, "records", {"who": who, "i": i})
(rundir / f"done-{who}").touch()
"""


@pytest.fixture
def study_url(request, tmp_path):
    """A fresh study on the backend named, deleted after the test."""
    url = backend_url(request.param, tmp_path)
    name = f"test-{uuid.uuid4().hex[:10]}"
    storage = open_storage(resolve_storage_url(url))
    study = optuna.create_study(study_name=name, storage=storage)
    yield study, url
    optuna.delete_study(study_name=name, storage=storage)


def start_appender(url: str, name: str, who: int, rundir, n_items: int, env=None):
    return subprocess.Popen(
        [sys.executable, "-c", APPENDER, url, name, str(who), str(rundir), str(n_items)],
        env={**os.environ, **(env or {})},
    )


def wait_for(paths, workers, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"still waiting for {[p.name for p in paths]}"
        assert all(w.poll() in (None, 0) for w in workers), "an appender failed"
        time.sleep(0.05)


def expected(items_by_who: dict[int, int]) -> list[str]:
    return sorted(
        json.dumps({"who": who, "i": i}, sort_keys=True)
        for who, n in items_by_who.items()
        for i in range(n)
    )


@pytest.mark.parametrize("study_url", BACKENDS, indirect=True)
def test_appends_from_processes_at_once_all_land(study_url, tmp_path):
    study, url = study_url
    workers = [
        start_appender(url, study.study_name, who, tmp_path, N_ITEMS) for who in range(N_PROCESSES)
    ]
    wait_for([tmp_path / f"ready-{who}" for who in range(N_PROCESSES)], workers)
    (tmp_path / "go").touch()
    assert [w.wait(timeout=120) for w in workers] == [0] * N_PROCESSES

    items = study_user_attr_list(study, "records")
    # Every item of every process is there, once, and each process's in the order it appended them.
    assert sorted(json.dumps(item, sort_keys=True) for item in items) == expected(
        dict.fromkeys(range(N_PROCESSES), N_ITEMS)
    )
    for who in range(N_PROCESSES):
        assert [item["i"] for item in items if item["who"] == who] == list(range(N_ITEMS))


@pytest.mark.parametrize(
    "study_url", ["HPSEARCH_TEST_POSTGRES", "HPSEARCH_TEST_MYSQL"], indirect=True
)
def test_an_appender_stopped_inside_its_update_loses_no_item(study_url, tmp_path):
    study, url = study_url
    # The stalled one reads the list, then waits 3 s before it writes; it is stopped meanwhile for
    # longer than a study lock's hold limit would last (HPSEARCH_LOCK_HOLD_LIMIT=2), while the other
    # appends.
    stalled = start_appender(
        url,
        study.study_name,
        0,
        tmp_path,
        1,
        {UPDATE_DELAY_ENV: "3", "HPSEARCH_LOCK_HOLD_LIMIT": "2"},
    )
    (tmp_path / "go").touch()
    wait_for([tmp_path / "ready-0"], [stalled])
    time.sleep(1.5)  # inside its update by now (loading took place before ready-0)
    os.kill(stalled.pid, signal.SIGSTOP)
    try:
        other = start_appender(url, study.study_name, 1, tmp_path, 3)
        time.sleep(5)
        # The other waits for the stopped one's transaction rather than write past it.
        assert not (tmp_path / "done-1").exists()
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    assert stalled.wait(timeout=120) == 0 and other.wait(timeout=120) == 0
    items = study_user_attr_list(study, "records")
    # Both processes' items are there: the stopped one's write did not replace the other's.
    assert sorted(json.dumps(item, sort_keys=True) for item in items) == expected({0: 1, 1: 3})


def test_an_update_that_raises_writes_nothing(tmp_path):
    url = resolve_storage_url(f"sqlite:///{tmp_path / 'r.db'}")
    study = optuna.create_study(study_name="refused", storage=open_storage(url))
    append_study_user_attr(study, "records", 1)

    def refuse(attrs):
        raise ValueError("refused")

    # The error comes out as raised, and the attributes are as they were.
    with pytest.raises(ValueError, match="refused"):
        update_study_user_attrs(study, refuse)
    assert study_user_attr_list(study, "records") == [1]


def test_an_absent_list_starts_empty(tmp_path):
    url = resolve_storage_url(f"sqlite:///{tmp_path / 'r.db'}")
    study = optuna.create_study(study_name="fresh", storage=open_storage(url))
    # Nothing recorded yet: an empty list, not an error.
    assert study_user_attr_list(study, "records") == []
    # The first append creates the list; what it returns is what the database holds.
    assert append_study_user_attr(study, "records", 1) == [1]
    assert study_user_attr_list(study, "records") == [1]
