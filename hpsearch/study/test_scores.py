"""The held-out test set's scores of a study's best model, kept apart from everything that steers
the search.

A model is scored on the test set once: the process that ends a run (or `best`, where no run has)
first claims the trial in one transaction (storage/record.py), so two runs ending at once do not
both score it, then records its scores. They live in a study user attribute, keyed by trial number
(`{"3": {"test_accuracy": 0.81, "test_loss": 0.52}}`), never in the trial's values or intermediate
values: the sampler and the pruner read only those, so a test score can never steer the search.
"""

from __future__ import annotations

import datetime
import socket
from typing import Any

import optuna

from hpsearch.storage import update_study_user_attrs
from hpsearch.storage.queries import fresh_user_attrs

TEST_SCORES_ATTR = "hpsearch_test_scores"
CLAIM_KEY = "claimed"  # an entry being scored: {"claimed": "when, host"}
TEST_PREFIX = "test_"


def recorded_test_scores(study: optuna.Study) -> dict[int, dict[str, float]]:
    """The scores recorded so far, by trial number (claims still being scored left out)."""
    recorded = fresh_user_attrs(study).get(TEST_SCORES_ATTR) or {}
    return {int(k): v for k, v in recorded.items() if CLAIM_KEY not in v}


def claim_test_scoring(study: optuna.Study, numbers: list[int]) -> list[int]:
    """Of the trials `numbers`, those this process is now to score: the ones neither scored nor
    claimed before, claimed in one transaction."""
    at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    mine: list[int] = []

    def claim(attrs: dict[str, Any]) -> dict[str, Any]:
        recorded = dict(attrs.get(TEST_SCORES_ATTR) or {})
        mine[:] = [n for n in numbers if str(n) not in recorded]
        if not mine:
            return {}
        for number in mine:
            recorded[str(number)] = {CLAIM_KEY: f"{at}, {socket.gethostname()}"}
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
