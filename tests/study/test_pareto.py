"""The Pareto front's rules, on values: dominance, the front, the pick within a latency."""

from __future__ import annotations

from hpsearch.storage.front_models import dominates, front_of
from hpsearch.study.pareto import pick_within

MAX_MIN = [True, False]  # accuracy up, latency down


def test_dominates_needs_no_worse_and_one_better():
    # Better accuracy at the same latency dominates; a trade-off does not; equal values do not.
    assert dominates([0.8, 10.0], [0.7, 10.0], MAX_MIN)
    assert not dominates([0.8, 12.0], [0.7, 10.0], MAX_MIN)
    assert not dominates([0.8, 10.0], [0.8, 10.0], MAX_MIN)


def test_front_keeps_the_trade_offs():
    values = {0: [0.8, 12.0], 1: [0.7, 10.0], 2: [0.6, 11.0], 3: [0.8, 12.0]}
    # Trial 2 is dominated by 1 (worse on both); 0 and 3 tie, and neither dominates the other.
    assert front_of(values, MAX_MIN) == {0, 1, 3}


def test_pick_within_takes_the_first_kept_member_under_the_latency():
    front = [
        {"number": 4, "costs": {"latency_ms": 20.0}, "model_kept": True},
        {"number": 2, "costs": {"latency_ms": 9.0}, "model_kept": False},
        {"number": 7, "costs": {"latency_ms": 8.0}, "model_kept": True},
    ]
    # The front is ordered best first; trial 2 fits but has no model, so trial 7 is picked.
    assert pick_within(front, 10.0)["number"] == 7
    assert pick_within(front, 25.0)["number"] == 4
    assert pick_within(front, 5.0) is None
