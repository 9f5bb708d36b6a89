"""A study's list attribute appended to by processes at once: under the lock, every item lands.

Each process appends its items in a tight loop, all starting at the same moment: without the lock,
two read-modify-writes that overlap would each write the list they read, and items would be lost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import optuna

from hpsearch.storage import (
    append_study_user_attr,
    open_storage,
    resolve_storage_url,
    study_user_attr_list,
)

N_PROCESSES, N_ITEMS = 2, 25

APPENDER = """
import sys, time
from pathlib import Path
import optuna
from hpsearch.storage import StudyLock, append_study_user_attr, open_storage, resolve_storage_url

url, name = resolve_storage_url(sys.argv[1]), sys.argv[2]
who, rundir = int(sys.argv[3]), Path(sys.argv[4])
study = optuna.load_study(study_name=name, storage=open_storage(url))
lock = StudyLock(url, name, "final-trainings")
(rundir / f"ready-{who}").touch()
while not (rundir / "go").exists():  # every process starts appending at the same moment
    time.sleep(0.005)
for i in range(int(sys.argv[5])):
    append_study_user_attr(study, lock, "records", {"who": who, "i": i})
"""


def test_appends_from_processes_at_once_all_land(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    storage = open_storage(resolve_storage_url(url))
    study = optuna.create_study(study_name="appended", storage=storage)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, url, "appended", str(who), str(tmp_path), str(N_ITEMS)]
        )
        for who in range(N_PROCESSES)
    ]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{who}").exists() for who in range(N_PROCESSES)):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), (
            "an appender did not start"
        )
        time.sleep(0.05)
    (tmp_path / "go").touch()
    assert [w.wait(timeout=120) for w in workers] == [0] * N_PROCESSES

    items = study_user_attr_list(study, "records")
    # Every item of every process is there, once, and each process's in the order it appended them.
    assert sorted(json.dumps(item, sort_keys=True) for item in items) == sorted(
        json.dumps({"who": who, "i": i}, sort_keys=True)
        for who in range(N_PROCESSES)
        for i in range(N_ITEMS)
    )
    for who in range(N_PROCESSES):
        assert [item["i"] for item in items if item["who"] == who] == list(range(N_ITEMS))


def test_an_absent_list_starts_empty(tmp_path):
    from hpsearch.storage import StudyLock

    url = resolve_storage_url(f"sqlite:///{tmp_path / 'r.db'}")
    study = optuna.create_study(study_name="fresh", storage=open_storage(url))
    # Nothing recorded yet: an empty list, not an error.
    assert study_user_attr_list(study, "records") == []
    # The first append creates the list; what it returns is what the database holds.
    assert append_study_user_attr(
        study, StudyLock(url, "fresh", "final-trainings"), "records", 1
    ) == [1]
    assert study_user_attr_list(study, "records") == [1]
