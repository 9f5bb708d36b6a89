"""Read-only views of a storage for `hpsearch status` and `hpsearch best`; no torch or transformers.

Trials are read once per study; running trials get their heartbeat age from the heartbeat table,
measured against the database's own clock (the one that wrote the heartbeats).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.errors import StudyError
from hpsearch.storage import heartbeat_ages, resolve_best_model, trials_of
from hpsearch.study import (
    EFFECTIVE_BATCH_ATTR,
    SPEC_ATTR,
    STOPPED_AT_TIMEOUT_ATTR,
    STOPPED_EARLY_ATTR,
    WARM_START_ATTR,
    confidence_of,
    count_states,
    final_trainings,
    recorded_test_scores,
    spec_change_records,
    stored_spec,
    summarize,
)
from hpsearch.study.pareto import pareto_front
from hpsearch.tasks import DEFAULT_TASK


def study_status(storage, name: str) -> dict[str, Any]:
    spec = stored_spec(storage, name)
    study = optuna.load_study(study_name=name, storage=storage)
    summary = summarize(study, spec)
    running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    ages = heartbeat_ages(storage, running)
    return {
        **dataclasses.asdict(summary),
        "running": [
            {
                "number": t.number,
                "host": t.user_attrs.get("host"),
                "pid": t.user_attrs.get("pid"),
                "device": t.user_attrs.get("device"),
                "params": t.params,
                "heartbeat_age_s": ages.get(t.number),
            }
            for t in running
        ],
        **describe_best_model(study),
        "final_trainings": final_trainings(study),
        "spec_changes": spec_change_records(study),
        "warm_started": warm_started(study),
        "test_scores": recorded_test_scores(study),
    }


def warm_started(study: optuna.Study) -> list[dict[str, Any]]:
    """The trials queued by a warm start: their number, state, value and where they came from."""
    return [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "from": t.user_attrs[WARM_START_ATTR],
        }
        for t in study.get_trials(deepcopy=False)
        if WARM_START_ATTR in t.user_attrs
    ]


def all_studies(storage) -> list[dict[str, Any]]:
    """One line per study in the storage, hpsearch's or not."""
    rows = []
    for frozen in storage.get_all_studies():
        attrs = frozen.user_attrs
        spec = attrs.get(SPEC_ATTR)
        trials = trials_of(storage, frozen)
        values = [
            t.value
            for t in trials
            if t.state == TrialState.COMPLETE and t.values and len(t.values) == 1
        ]
        maximize = frozen.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        best = (max if maximize else min)(values) if values else None
        rows.append(
            {
                "name": frozen.study_name,
                "task": parse_task(spec),
                "metric": f"eval_{_first_objective(spec)['metric']}" if spec else None,
                "n_trials_budget": spec["budget"]["n_trials"] if spec else None,
                "states": dict(count_states(trials)),
                "best_value": best,
            }
        )
    return rows


def _first_objective(spec: dict) -> dict:
    """A stored spec's objective, or the first of its objectives (several: no `objective` key)."""
    return spec.get("objective") or spec["objectives"][0]


def parse_task(spec: dict | None) -> str | None:
    """The task of a stored spec, read without validating it all (a spec older than tasks: none)."""
    return None if spec is None else spec.get("task", DEFAULT_TASK)


def best_trial(storage, name: str) -> dict[str, Any]:
    spec = stored_spec(storage, name)
    study = optuna.load_study(study_name=name, storage=storage)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise StudyError(
            f"study {name!r} has no complete trial yet; run it first (hpsearch run --study {name})"
        )
    if spec.is_multi_objective:
        return {
            "study": name,
            "task": spec.task,
            "objectives": [o.shown_name for o in spec.all_objectives],
            "directions": [o.direction for o in spec.all_objectives],
            "pareto": pareto_front(study, spec),
        }
    return describe_trial_record(study, spec, study.best_trial)


def describe_trial_record(study: optuna.Study, spec, trial: FrozenTrial) -> dict[str, Any]:
    """What `best` shows and export's model card states about one trial."""
    confidence = confidence_of(
        trial, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )
    return {
        "study": study.study_name,
        "task": spec.task,
        "number": trial.number,
        "metric": spec.objective.eval_key,
        "value": trial.values[0],  # of several objectives, the first
        **({"values": list(trial.values)} if len(trial.values) > 1 else {}),
        "params": trial.params,
        "metrics": trial.user_attrs.get("metrics", {}),
        "confidence": None if confidence is None else dataclasses.asdict(confidence),
        "seed": trial.user_attrs.get("seed"),
        "train_seconds": trial.user_attrs.get("train_seconds"),
        "effective_batch_size": trial.user_attrs.get(EFFECTIVE_BATCH_ATTR),
        "stopped_early": bool(trial.user_attrs.get(STOPPED_EARLY_ATTR)),
        "stopped_at_timeout": trial.user_attrs.get(STOPPED_AT_TIMEOUT_ATTR),
        "warm_start_from": trial.user_attrs.get(WARM_START_ATTR),
        "test_scores": recorded_test_scores(study).get(trial.number),
        **describe_best_model(study),
    }


def describe_best_model(study: optuna.Study) -> dict[str, Any]:
    """The best trial's kept model ("best_model": trial, value, artifact_id), or None and why
    ("best_model_problem", one line)."""
    kept = resolve_best_model(study)
    return {"best_model": kept.pointer, "best_model_problem": kept.problem}
