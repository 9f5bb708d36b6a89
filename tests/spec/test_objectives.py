"""`objectives:`: several objectives, the first a metric of the evaluation, the rest metrics or
measured costs; one line for each mistake."""

from __future__ import annotations

import pytest

from hpsearch.spec import StudySpec, parse_spec
from tests.spec.test_schema import reject


def several(tiny_spec: dict, objectives: list) -> dict:
    spec = {k: v for k, v in tiny_spec.items() if k != "objective"}
    return {**spec, "objectives": objectives}


def test_objectives_parse_with_directions_and_round_trip(tiny_spec):
    spec = parse_spec(
        several(tiny_spec, [{"metric": "eval_accuracy"}, {"metric": "latency_ms"}]), "t"
    )
    # Each direction is the one that searches for the better model; the first objective is also
    # `objective` (what trials are pruned on).
    assert [(o.metric, o.direction) for o in spec.all_objectives] == [
        ("accuracy", "maximize"),
        ("latency_ms", "minimize"),
    ]
    assert spec.is_multi_objective and spec.objective.metric == "accuracy"
    # The stored form holds objectives: alone and parses back to the same spec.
    assert "objective" not in spec.to_dict()
    assert StudySpec.model_validate(spec.to_dict()) == spec


def test_a_single_objective_spec_is_unchanged(tiny_spec):
    spec = parse_spec(tiny_spec, "t")
    # objective: keeps meaning one objective; objectives: stays unset.
    assert not spec.is_multi_objective
    assert spec.all_objectives == [spec.objective]
    assert spec.to_dict()["objective"]["metric"] == "accuracy"


@pytest.mark.parametrize(
    ("objectives", "expected"),
    [
        (
            [{"metric": "latency_ms"}, {"metric": "accuracy"}],
            "objectives.0.metric: latency_ms is known only after training",
        ),
        (
            [{"metric": "accuracy"}, {"metric": "latency_ms", "direction": "maximize"}],
            "objectives.1: direction maximize for latency_ms would search for the worst model",
        ),
        (
            [{"metric": "accuracy"}, {"metric": "speed"}],
            "objectives.1.metric: unknown metric 'speed'",
        ),
        (
            [{"metric": "accuracy"}, {"metric": "eval_accuracy"}],
            "objectives.1: accuracy is listed twice",
        ),
        (
            [{"metric": "accuracy"}, {"metric": "params", "value": "best"}],
            "objectives.1: value: best applies to the first objective only",
        ),
        ([{"metric": "accuracy"}], "objectives: a list of two or more objectives, got 1; for one"),
    ],
)
def test_rejects_objective_mistakes(tiny_spec, objectives, expected):
    # One line naming the key and the fix.
    assert expected in reject(several(tiny_spec, objectives))


def test_objective_and_objectives_together_are_refused(tiny_spec):
    both = {**tiny_spec, "objectives": [{"metric": "accuracy"}, {"metric": "latency_ms"}]}
    # Exactly one of them: which one wins would be a guess.
    assert "objective: and objectives: both given" in reject(both)


def test_cmaes_is_refused_with_several_objectives(tiny_spec):
    spec = several(tiny_spec, [{"metric": "accuracy"}, {"metric": "latency_ms"}])
    # Optuna's CMA-ES refuses a multi-objective study: said before anything runs (on a space of
    # ranges only, which CMA-ES could otherwise search).
    numeric = {"learning_rate": spec["search_space"]["learning_rate"]}
    message = reject({**spec, "search_space": numeric, "sampler": {"name": "cmaes"}})
    assert "cmaes cannot search several objectives" in message
