"""The kept models of a multi-objective study: its Pareto front's, at most MAX_FRONT_MODELS.

The same protocol as one best model (hpsearch.storage.best_model): a trial that may join the front
uploads its model as its pending model, and the transaction that completes it settles it. Here
the study user attribute FRONT_MODELS_ATTR holds a list of {"trial", "values", "artifact_id"}.
Inside the completing transaction, the study's row locked (two workers completing at once take
turns, each reading what the other committed), the front is computed afresh from every COMPLETE
trial's values and this trial's: kept members that left it (dominated by the newcomer) are dropped
and their files removed after the commit; the newcomer is kept if it is on the front and fewer than
MAX_FRONT_MODELS models are kept, else its file is removed. Which models are kept thus depends only
on the order in which trials complete: the first front members keep their place, and a later
member that finds the list full has no model (`export --trial N` says so; `train --trial N` trains
it again). A trial dominated by a complete trial when it finishes training uploads nothing: the
front only grows harder to join.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from hpsearch.storage.artifacts import ARTIFACT_ATTR_PREFIX
from hpsearch.storage.optuna_private import rdb_models
from hpsearch.storage.queries import fresh_user_attrs, lock_study_attr

FRONT_MODELS_ATTR = "hpsearch_front_models"
MAX_FRONT_MODELS = 8
MIMETYPE = "application/zip"


def dominates(a: Sequence[float], b: Sequence[float], maximize: Sequence[bool]) -> bool:
    """`a` is at least as good as `b` in every objective and better in one."""
    at_least = all((x >= y) if up else (x <= y) for x, y, up in zip(a, b, maximize, strict=True))
    return at_least and any(x != y for x, y in zip(a, b, strict=True))


def front_of(values: dict[int, Sequence[float]], maximize: Sequence[bool]) -> set[int]:
    """The trial numbers whose values no other trial's dominate."""
    return {
        number
        for number, mine in values.items()
        if not any(dominates(other, mine, maximize) for n, other in values.items() if n != number)
    }


def maximizing(study: optuna.Study) -> list[bool]:
    return [d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions]


def front_model_pointers(study: optuna.Study) -> list[dict[str, Any]]:
    """The kept front models as the database holds them now, in the order they were kept."""
    return list(fresh_user_attrs(study).get(FRONT_MODELS_ATTR) or [])


def may_join_front(study: optuna.Study, values: Sequence[float]) -> bool:
    """No COMPLETE trial dominates `values` now (if one does, none ever will not)."""
    up = maximizing(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return not any(dominates(t.values, values, up) for t in complete if t.values)


def settle_front_model(session, trial, values: Sequence[float], pending: dict) -> list[str]:
    """Inside the transaction that completes `trial` (an ORM row) with `values`: keep its pending
    model if it is on the front and there is room; returns the artifacts to remove after commit."""
    study, row, kept = lock_study_attr(session, trial.study_id, FRONT_MODELS_ATTR)
    kept = kept or []
    models = rdb_models()
    user_attrs, system_attrs = models.StudyUserAttributeModel, models.StudySystemAttributeModel
    everyone = _complete_values(session, study.study_id)
    everyone[trial.number] = list(values)
    up = [d.direction == optuna.study.StudyDirection.MAXIMIZE for d in study.directions]
    front = front_of(everyone, up)
    staying = [m for m in kept if m["trial"] in front]
    removed = [m["artifact_id"] for m in kept if m["trial"] not in front]
    if trial.number in front and len(staying) < MAX_FRONT_MODELS:
        staying.append(
            {"trial": trial.number, "values": list(values), "artifact_id": pending["artifact_id"]}
        )
        _list_artifact(session, system_attrs, study.study_id, pending)
    else:
        removed.append(pending["artifact_id"])
    for artifact_id in removed:
        _unlist_artifact(session, system_attrs, study.study_id, artifact_id)
    if row is None:
        session.add(
            user_attrs(
                study_id=study.study_id, key=FRONT_MODELS_ATTR, value_json=json.dumps(staying)
            )
        )
    else:
        row.value_json = json.dumps(staying)
    return removed


def _complete_values(session, study_id: int) -> dict[int, list[float]]:
    models = rdb_models()
    trials, values = models.TrialModel, models.TrialValueModel
    rows = (
        session.query(trials.number, values.objective, values.value, values.value_type)
        .join(values, values.trial_id == trials.trial_id)
        .filter(trials.study_id == study_id, trials.state == TrialState.COMPLETE)
        .with_for_update()
        .all()
    )
    found: dict[int, dict[int, float]] = {}
    for number, objective, value, value_type in rows:
        found.setdefault(number, {})[objective] = values.stored_repr_to_value(value, value_type)
    return {n: [by[i] for i in sorted(by)] for n, by in found.items()}


def _list_artifact(session, system_attrs, study_id: int, pending: dict) -> None:
    """The dashboard's entry, as optuna.artifacts.upload_artifact writes it (a JSON string)."""
    meta = {
        "artifact_id": pending["artifact_id"],
        "filename": pending["filename"],
        "mimetype": MIMETYPE,
        "encoding": None,
    }
    session.add(
        system_attrs(
            study_id=study_id,
            key=ARTIFACT_ATTR_PREFIX + pending["artifact_id"],
            value_json=json.dumps(json.dumps(meta)),
        )
    )


def _unlist_artifact(session, system_attrs, study_id: int, artifact_id: str) -> None:
    listed = (
        session.query(system_attrs)
        .filter(
            system_attrs.study_id == study_id,
            system_attrs.key == ARTIFACT_ATTR_PREFIX + artifact_id,
        )
        .with_for_update()
        .one_or_none()
    )
    if listed is not None:  # nulled, as optuna-dashboard's own delete does
        listed.value_json = json.dumps(json.dumps(None))
