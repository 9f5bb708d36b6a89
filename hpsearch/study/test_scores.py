"""The held-out test set's scores of a study's best model, kept apart from everything that steers
the search.

A model is scored on the test set once: the process that ends a run (or `best`, where no run has)
first claims the trial in one transaction (storage/record.py), so two runs ending at once do not
both score it, then records its scores. A claim names its host, process and time, so that one
whose process died (kill -9, a lost node) does not block the scoring for ever: on the claimant's
own host a claim whose process is gone is taken over at once; from another host, once it is older
than CLAIM_LEASE_SECONDS (a host cannot see another's processes). They live in a study user
attribute, keyed by trial number
(`{"3": {"test_accuracy": 0.81, "test_loss": 0.52}}`), never in the trial's values or intermediate
values: the sampler and the pruner read only those, so a test score can never steer the search.
"""

from __future__ import annotations

import datetime
import os
import socket
import time
from typing import Any

import optuna

from hpsearch.storage import update_study_user_attrs
from hpsearch.storage.queries import fresh_user_attrs

TEST_SCORES_ATTR = "hpsearch_test_scores"
CLAIM_KEY = "claimed"  # an entry being scored: {"claimed": "when, host", "host", "pid", "at"}
TEST_PREFIX = "test_"
# Longer than scoring one model on a large test set takes, so that a live claimant on another host
# is never overtaken; a dead one on its own host is overtaken at once (see _is_stale).
CLAIM_LEASE_SECONDS = 6 * 3600


def recorded_test_scores(study: optuna.Study) -> dict[int, dict[str, float]]:
    """The scores recorded so far, by trial number (claims still being scored left out)."""
    recorded = fresh_user_attrs(study).get(TEST_SCORES_ATTR) or {}
    return {int(k): v for k, v in recorded.items() if CLAIM_KEY not in v}


def claim_test_scoring(study: optuna.Study, numbers: list[int]) -> list[int]:
    """Of the trials `numbers`, those this process is now to score: the ones neither scored nor
    claimed before, claimed in one transaction."""
    at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    host = socket.gethostname()
    mine: list[int] = []

    def claim(attrs: dict[str, Any]) -> dict[str, Any]:
        recorded = dict(attrs.get(TEST_SCORES_ATTR) or {})
        mine[:] = [n for n in numbers if str(n) not in recorded or _is_stale(recorded[str(n)])]
        if not mine:
            return {}
        for number in mine:
            recorded[str(number)] = {
                CLAIM_KEY: f"{at}, {host}",
                "host": host,
                "pid": os.getpid(),
                "at": time.time(),
            }
        return {TEST_SCORES_ATTR: recorded}

    update_study_user_attrs(study, claim)
    return mine


def record_test_scores(study: optuna.Study, number: int, scores: dict[str, float] | None) -> None:
    """Record trial `number`'s test scores (keys test_<metric>); None gives its claim up (scoring
    failed), so that a later run or `best` may score it."""

    def record(attrs: dict[str, Any]) -> dict[str, Any]:
        recorded = dict(attrs.get(TEST_SCORES_ATTR) or {})
        if scores is None:
            recorded.pop(str(number), None)
        else:
            recorded[str(number)] = {k: round(float(v), 6) for k, v in scores.items()}
        return {TEST_SCORES_ATTR: recorded}

    update_study_user_attrs(study, record)


def _is_stale(entry: dict[str, Any]) -> bool:
    """Whether `entry` is a claim whose claimant is gone: its process has died on this host, or it
    is older than the lease (a claim written before claims named their process counts as old)."""
    if CLAIM_KEY not in entry:
        return False  # scores, recorded
    if time.time() - float(entry.get("at", 0.0)) > CLAIM_LEASE_SECONDS:
        return True
    return entry.get("host") == socket.gethostname() and not _process_alive(int(entry["pid"]))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True
