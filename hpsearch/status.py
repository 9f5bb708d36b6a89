"""Read-only views of a storage for `hpsearch status` and `hpsearch best`; no torch, no transformers.

Trials are read once per study; running trials get their heartbeat age from the heartbeat table,
measured against the database's own clock (the one that wrote the heartbeats).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna
from optuna.trial import TrialState

from hpsearch.artifact import best_model_pointer
from hpsearch.budget import count_states
from hpsearch.errors import StudyError
from hpsearch.study import SPEC_ATTR, stored_spec
from hpsearch.summary import summarize


def study_status(storage, name: str) -> dict[str, Any]:
    spec = stored_spec(storage, name)
    study = optuna.load_study(study_name=name, storage=storage)
    summary = summarize(study, spec.objective.eval_key, spec.budget.n_trials)
    running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    ages = heartbeat_ages(storage, [t._trial_id for t in running])
    return {
        **dataclasses.asdict(summary),
        "running": [
            {
                "number": t.number, "host": t.user_attrs.get("host"), "pid": t.user_attrs.get("pid"),
                "device": t.user_attrs.get("device"), "params": t.params,
                "heartbeat_age_s": ages.get(t._trial_id),
            }
            for t in running
        ],
        "best_model": best_model_pointer(study),
    }


def all_studies(storage) -> list[dict[str, Any]]:
    """One line per study in the storage, hpsearch's or not."""
    rows = []
    for frozen in storage.get_all_studies():
        attrs = frozen.user_attrs
        spec = attrs.get(SPEC_ATTR)
        trials = storage.get_all_trials(frozen._study_id, deepcopy=False)
        values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.values and len(t.values) == 1]
        maximize = frozen.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        best = (max if maximize else min)(values) if values else None
        rows.append({
            "name": frozen.study_name,
            "metric": f"eval_{spec['objective']['metric']}" if spec else None,
            "n_trials_budget": spec["budget"]["n_trials"] if spec else None,
            "states": dict(count_states(trials)),
            "best_value": best,
        })
    return rows


def best_trial(storage, name: str) -> dict[str, Any]:
    spec = stored_spec(storage, name)
    study = optuna.load_study(study_name=name, storage=storage)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise StudyError(f"study {name!r} has no complete trial yet; run it first (hpsearch run --study {name})")
    best = study.best_trial
    return {
        "study": name, "number": best.number, "metric": spec.objective.eval_key, "value": best.value,
        "params": best.params, "metrics": best.user_attrs.get("metrics", {}),
        "seed": best.user_attrs.get("seed"), "train_seconds": best.user_attrs.get("train_seconds"),
        "best_model": best_model_pointer(study),
    }


def heartbeat_ages(storage, trial_ids: list[int]) -> dict[int, float]:
    if not trial_ids or not hasattr(storage, "scoped_session"):
        return {}
    import sqlalchemy
    from optuna.storages._rdb.models import TrialHeartbeatModel

    session = storage.scoped_session()
    try:
        now = session.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()
        rows = session.execute(
            sqlalchemy.select(TrialHeartbeatModel.trial_id, TrialHeartbeatModel.heartbeat)
            .where(TrialHeartbeatModel.trial_id.in_(trial_ids))
        ).all()
    finally:
        session.close()
    return {trial_id: round((now - beat).total_seconds(), 1) for trial_id, beat in rows}
