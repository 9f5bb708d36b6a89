"""What `hpsearch train` re-trains, and the record of every final training kept in the study.

A final training takes one trial's configuration and seed (the best trial's by default) and trains
it again, on the search's capped data or on all of it, possibly for another number of epochs. It
trains in one process on one device: a trial that trained on N devices (a DDP trial group) keeps
its effective batch through N times its gradient accumulation (study/batch.py). Its record is
appended to a study user attribute in one transaction, so that the dashboard, the note and `status`
show what was trained from the study, and two trainings finishing at once both land.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.errors import HpsearchError, StudyError
from hpsearch.spec import StudySpec
from hpsearch.storage import append_study_user_attr, study_user_attr_list
from hpsearch.study.batch import WORLD_SIZE_ATTR, reproducing_accumulation
from hpsearch.study.budget import FAIL_REASON_ATTR
from hpsearch.study.summary import INTERVAL_ATTR

FINAL_TRAININGS_ATTR = "hpsearch_final_trainings"
TRAINABLE = (TrialState.COMPLETE, TrialState.PRUNED)  # their parameters and seed are known


@dataclass(frozen=True)
class FinalPlan:
    """One final training, decided: the trial it re-trains and how."""

    trial: int
    params: dict[str, Any]
    """The trial's parameters, as searched."""
    spec: StudySpec
    """The search's spec with the trial's model and max_length (where searched); with full_data,
    without dataset.max_train_samples (same eval set)."""
    values: dict[str, Any]
    """What it trains with: the spec's fixed settings, the trial's parameters, the epochs asked."""
    seed: int
    full_data: bool
    epochs: float | None
    """The epochs asked for (--epochs); None: the trial's own."""
    trial_value: float | None
    """The objective the trial recorded: its value, or a pruned trial's last evaluation."""
    trial_interval: list[float] | None
    trial_devices: int = 1
    """The devices the trial trained on (its DDP ranks); the final training trains on one, with
    that many times the trial's accumulation."""

    @property
    def fixed(self) -> dict[str, Any]:
        """The values that are not the trial's parameters: the spec's fixed ones, the epochs asked
        for, the accumulation that keeps a DDP trial's effective batch."""
        return {k: v for k, v in self.values.items() if k not in self.params or self.params[k] != v}


def plan_final_training(
    study: optuna.Study,
    spec: StudySpec,
    number: int | None = None,
    *,
    full_data: bool = False,
    epochs: float | None = None,
) -> FinalPlan:
    """The final training of trial `number` (None: the best) of `study`, searched by `spec`."""
    trial = choose_trial(study, number)
    spec = spec.for_trial(trial.params)  # the model and max_length it trained with
    values = {**spec.training, **trial.params}
    if epochs is not None:
        if epochs <= 0:
            raise HpsearchError(f"--epochs must be more than 0, but got {epochs}")
        values["num_train_epochs"] = epochs
        values.pop("max_steps", None)  # it would override the epochs asked for
    trial_devices = int(trial.user_attrs.get(WORLD_SIZE_ATTR, 1))
    if trial_devices > 1:
        accumulation = int(values.get("gradient_accumulation_steps", 1))
        values["gradient_accumulation_steps"] = reproducing_accumulation(
            accumulation, trial_devices
        )
    if full_data:
        spec = spec.model_copy(
            update={"dataset": spec.dataset.model_copy(update={"max_train_samples": None})}
        )
    if trial.state == TrialState.COMPLETE:
        trial_value = trial.values[0]  # of several objectives, the first
    else:
        trial_value = trial.intermediate_values.get(max(trial.intermediate_values, default=0))
    return FinalPlan(
        trial=trial.number,
        params=dict(trial.params),
        spec=spec,
        values=values,
        # A trial made by hand has no seed recorded: the one the runner would have given it.
        seed=trial.user_attrs.get("seed", spec.seed + trial.number),
        full_data=full_data,
        epochs=epochs,
        trial_value=trial_value,
        trial_interval=trial.user_attrs.get(INTERVAL_ATTR),
        trial_devices=trial_devices,
    )


def choose_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """The best trial, or trial `number`, which must be COMPLETE or PRUNED; StudyError otherwise."""
    name = study.study_name
    trials = study.get_trials(deepcopy=False)
    if number is None:
        if not any(t.state == TrialState.COMPLETE for t in trials):
            raise StudyError(
                f"study {name!r} has no complete trial to train yet; run it first "
                f"(hpsearch run --study {name}), or pick a pruned one with --trial"
            )
        if len(study.directions) > 1:
            raise StudyError(
                f"study {name!r} has several objectives and no one best trial; pick a member of "
                f"its Pareto front with --trial N (hpsearch best --study {name} lists them)"
            )
        return study.best_trial
    by_number = {t.number: t for t in trials}
    if number not in by_number:
        known = f"its trials are 0-{len(trials) - 1}" if trials else "it has no trial yet"
        raise StudyError(f"study {name!r} has no trial {number}; {known}")
    trial = by_number[number]
    if trial.state not in TRAINABLE:
        reason = trial.user_attrs.get(FAIL_REASON_ATTR)
        why = f" ({reason})" if trial.state == TrialState.FAIL and reason else ""
        raise StudyError(
            f"trial {number} of study {name!r} is {trial.state.name}{why}: only a COMPLETE or "
            f"PRUNED trial can be trained again; see hpsearch status --study {name}"
        )
    return trial


def final_trainings(study: optuna.Study) -> list[dict[str, Any]]:
    """Every final training recorded in the study, oldest first, as the database holds them now."""
    return study_user_attr_list(study, FINAL_TRAININGS_ATTR)


def record_final_training(study: optuna.Study, record: dict[str, Any]) -> None:
    """Append `record` (JSON-safe) to the study's final trainings, in one transaction: trainings
    finishing at once all land (storage/record.py)."""
    append_study_user_attr(study, FINAL_TRAININGS_ATTR, record)
