"""The anytime curves' extraction and the figures read off them (bench/curves.py)."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from curves import anytime_curve, best_at, render_table, seed_figures, time_to_reach

START = 1_000.0


def trial(
    finished: float | None, steps: int, state: str = "COMPLETE", value: float | None = None
) -> dict:
    return {
        "finished_at": None if finished is None else START + finished,
        "steps": steps,
        "state": state,
        "value": value,
    }


def test_the_curve_is_the_best_complete_value_so_far_in_finishing_order():
    trials = [
        trial(30, 100, value=0.70),
        trial(10, 40, "PRUNED", value=None),  # finished first: steps and time, no value
        trial(55, 100, value=0.65),  # worse: the best stays
        trial(80, 120, value=0.74),
        trial(95, 20, "FAIL"),
        trial(None, 0, "RUNNING"),  # not finished: not on the curve
    ]
    curve = anytime_curve(trials, START)
    assert [p["seconds"] for p in curve] == [10, 30, 55, 80, 95]
    assert [p["steps"] for p in curve] == [40, 140, 240, 360, 380]
    assert [p["best"] for p in curve] == [None, 0.70, 0.70, 0.74, 0.74]


def test_minimizing_keeps_the_lowest():
    curve = anytime_curve(
        [trial(1, 5, value=2.0), trial(2, 5, value=3.0), trial(3, 5, value=1.5)],
        START,
        maximize=False,
    )
    assert [p["best"] for p in curve] == [2.0, 2.0, 1.5]


def test_best_at_a_time_counts_only_trials_finished_by_then():
    curve = anytime_curve([trial(30, 100, value=0.70), trial(80, 120, value=0.74)], START)
    assert best_at(curve, 29.9) is None
    assert best_at(curve, 30) == 0.70 and best_at(curve, 79) == 0.70 and best_at(curve, 500) == 0.74
    assert time_to_reach(curve, 0.72) == 80 and time_to_reach(curve, 0.70) == 30
    assert time_to_reach(curve, 0.75) is None


def test_figures_against_hf_and_the_summary_over_seeds():
    def run(seconds, points):
        curve = anytime_curve([trial(t, 10, value=v) for t, v in points], START)
        return {"seconds": seconds, "best_value": max(v for _, v in points), "curve": curve}

    by_seed = {
        "0": seed_figures(
            {
                "hf": run(400, [(100, 0.70), (400, 0.72)]),
                "hpsearch-timed": run(420, [(50, 0.73), (410, 0.75)]),
            }
        ),
        "1": seed_figures(
            {"hf": run(500, [(250, 0.74)]), "hpsearch-timed": run(510, [(90, 0.71), (300, 0.74)])}
        ),
        "2": seed_figures(
            {"hf": run(450, [(450, 0.73)]), "hpsearch-timed": run(460, [(200, 0.72)])}
        ),
    }
    seed0 = by_seed["0"]["hpsearch-timed"]
    assert seed0["reach_seconds"] == 50 and seed0["reach_fraction"] == pytest.approx(0.125)
    assert seed0["best_at_reference_time"] == 0.73  # 0.75 came at 410 s, after HF had finished
    assert by_seed["1"]["hpsearch-timed"]["reach_fraction"] == pytest.approx(0.6)
    assert by_seed["2"]["hpsearch-timed"]["reach_seconds"] is None
    table = render_table(by_seed, "eval_accuracy")
    # One seed never reached HF's best: the median is not made up, the miss is counted.
    assert "| hpsearch-timed | never in 1 of 3 (0.12, 0.60 in the others) |" in table
    assert "| hf | 1.00 (0.50 to 1.00) |" in table
    # Best at HF's wall time minus HF's best, in points: +1.0, 0.0, -1.0.
    assert "| +0.00 (-1.00 to +1.00) |" in table
