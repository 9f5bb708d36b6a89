"""The pruning replay (bench/prune_replay.py): recorded learning curves, each setting's pruner."""

from __future__ import annotations

import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from prune_replay import replay


def recorded(number: int, curve: list[float], steps: int = 60) -> dict:
    return {
        "number": number,
        "value": curve[-1],
        "steps": steps,
        "curve": curve,
        "direction": "maximize",
    }


# Six evaluations in one epoch each. Trial 1 starts slow and ends best: a late bloomer.
TRIALS = [
    recorded(0, [0.50, 0.55, 0.60, 0.65, 0.70, 0.72]),
    recorded(1, [0.40, 0.45, 0.50, 0.65, 0.75, 0.80]),
    recorded(2, [0.45, 0.50, 0.55, 0.60, 0.66, 0.70]),
    recorded(3, [0.52, 0.58, 0.62, 0.66, 0.70, 0.74]),
    recorded(4, [0.30, 0.32, 0.33, 0.34, 0.35, 0.36]),
    recorded(5, [0.31, 0.33, 0.34, 0.35, 0.36, 0.37]),
]


def test_without_a_warm_up_the_late_bloomer_is_pruned_and_the_best_is_lost():
    result = replay(TRIALS, "successive_halving", 3, 1 / 3, 0)
    # At its first evaluation (2 of 6) trial 1 is behind trial 0, the only one before it: stopped.
    assert result["top3_pruned"] >= 1 and result["kept_best"] < result["true_best"] == 0.80


def test_with_a_warm_up_the_best_is_kept_and_the_poor_trials_are_still_stopped():
    result = replay(TRIALS, "successive_halving", 3, 1 / 3, 4)
    assert result["top3_pruned"] == 0 and result["kept_best"] == 0.80
    # Trials 4 and 5 come after the warm-up, below every rung: both stopped at their first
    # evaluation (2 of 6), saving 4/6 of their 60 steps each.
    assert result["pruned"] == 2 and result["steps_saved"] == 80
