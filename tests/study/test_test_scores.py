"""Test-set scoring claims under lost processes: a claimant killed with kill -9 (or lost with its
node) does not block the scoring of a kept model for ever; a live claimant is never overtaken."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import optuna
import pytest

from hpsearch.storage import update_study_user_attrs
from hpsearch.study.test_scores import (
    CLAIM_KEY,
    CLAIM_LEASE_SECONDS,
    TEST_SCORES_ATTR,
    claim_test_scoring,
    record_test_scores,
    recorded_test_scores,
)

CLAIM_IN_A_PROCESS = """
import os, signal, sys, time
import optuna
from hpsearch.study.test_scores import claim_test_scoring
study = optuna.load_study(study_name="scored", storage=sys.argv[1])
print(claim_test_scoring(study, [0, 1]), flush=True)
if sys.argv[2] == "die":
    os.kill(os.getpid(), signal.SIGKILL)  # a claimant lost midway through scoring
time.sleep(600)  # a claimant still scoring
"""


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'claims.db'}"


@pytest.fixture
def study(url) -> optuna.Study:
    return optuna.create_study(study_name="scored", storage=url)


def claim_in_a_process(url: str, fate: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", CLAIM_IN_A_PROCESS, url, fate],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "[0, 1]"  # it claimed both
    return process


def test_a_claim_whose_process_was_killed_is_taken_over(study, url):
    process = claim_in_a_process(url, "die")
    assert process.wait(timeout=60) == -9
    # The dead process's claims are taken over: the kept models get scored after all.
    assert claim_test_scoring(study, [0, 1]) == [0, 1]
    record_test_scores(study, 0, {"test_accuracy": 0.75})
    assert recorded_test_scores(study) == {0: {"test_accuracy": 0.75}}
    # Scores once recorded are never claimed again; this process's live claim is not taken over.
    assert claim_test_scoring(study, [0, 1]) == []


def test_a_live_claimant_is_not_overtaken(study, url):
    process = claim_in_a_process(url, "live")
    try:
        assert claim_test_scoring(study, [0, 1]) == []
    finally:
        process.kill()
        process.wait(timeout=60)
    assert claim_test_scoring(study, [0, 1]) == [0, 1]


def claim_from_another_host(study: optuna.Study, age_seconds: float) -> None:
    """A claim as a process on another host writes it (this host cannot see that process)."""
    entry = {CLAIM_KEY: "then, node-7", "host": "node-7", "pid": 1, "at": time.time() - age_seconds}
    update_study_user_attrs(study, lambda attrs: {TEST_SCORES_ATTR: {"0": entry}})
    assert socket.gethostname() != "node-7"


def test_another_hosts_claim_is_taken_over_only_after_its_lease(study):
    claim_from_another_host(study, age_seconds=60)
    assert claim_test_scoring(study, [0]) == []
    claim_from_another_host(study, age_seconds=CLAIM_LEASE_SECONDS + 60)
    assert claim_test_scoring(study, [0]) == [0]
