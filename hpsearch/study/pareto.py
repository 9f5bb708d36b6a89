"""A multi-objective study's Pareto front, as `status`, `best`, the report and `export` show it.

The front is Optuna's (`study.best_trials`: the COMPLETE trials no other dominates), each member
with its values by objective, its measured costs, and whether its model is kept
(hpsearch.storage.front_models decides which are).
"""

from __future__ import annotations

from typing import Any

import optuna

from hpsearch.storage.front_models import front_model_pointers
from hpsearch.study.test_scores import recorded_test_scores

# The trial user attributes every trial trained to its end records (hpsearch.trial.cost).
COST_ATTRS = ("latency_ms", "model_size_mb", "params", "trainable_params", "train_seconds")


def pareto_front(study: optuna.Study, spec) -> list[dict[str, Any]]:
    """The front's members, best first on the first objective; [] for a single-objective study."""
    if not spec.is_multi_objective:
        return []
    kept = {p["trial"]: p for p in front_model_pointers(study)}
    scored = recorded_test_scores(study)
    maximize = spec.objective.direction == "maximize"
    members = sorted(study.best_trials, key=lambda t: t.values[0], reverse=maximize)
    return [
        {
            "number": t.number,
            "values": {o.shown_name: v for o, v in zip(spec.all_objectives, t.values, strict=True)},
            "params": dict(t.params),
            "costs": {k: t.user_attrs[k] for k in COST_ATTRS if k in t.user_attrs},
            "model_kept": t.number in kept,
            "test_scores": scored.get(t.number),
        }
        for t in members
    ]


def pick_within(front: list[dict[str, Any]], max_latency_ms: float) -> dict[str, Any] | None:
    """The member best on the first objective (the front's order) among those with a kept model
    and a latency of at most `max_latency_ms`; None if there is none."""
    for member in front:
        latency = member["costs"].get("latency_ms")
        if member["model_kept"] and latency is not None and latency <= max_latency_ms:
            return member
    return None
