"""Warm start: the best configurations of earlier studies, tried first by a new one.

Each study named by `warm_start.from` must be an hpsearch study of the same storage, task and
objective metric: otherwise its values rank configurations by another measure, and that is a
mistake to say, not a start to take. Its `top` best COMPLETE trials are mapped onto this study's
search space: a parameter this space lacks is dropped, a number outside this range is clamped to
it, a choice this space does not offer is dropped (each said in one line); a parameter of this
space the source did not search is left to the sampler. The configurations are queued once per
source (storage/enqueue.py), before any trial of the study is sampled, each with `warm_start_from`
recorded on it; they count toward the budget like any trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from hpsearch.errors import StudyError
from hpsearch.spec import ChoiceParam, IntParam, StudySpec
from hpsearch.storage import QueuedTrial, enqueue_once
from hpsearch.study.open import stored_spec, study_exists

WARM_START_ATTR = "warm_start_from"  # trial user attribute: "STUDY#NUMBER" it was taken from
GUARD_PREFIX = "hpsearch_warm_start:"  # study system attribute per source: its trials are queued


@dataclass(frozen=True)
class WarmStart:
    """The configurations decided for one source study, and the lines that say what was changed."""

    source: str
    trials: list[QueuedTrial]
    notes: list[str]


def plan_warm_start(storage, name: str, spec: StudySpec) -> list[WarmStart]:
    """The warm start `spec` asks for, read from the storage; StudyError (nothing written) if a
    source is missing, is this study, or measures another task or metric."""
    if spec.warm_start is None:
        return []
    plans = []
    for source in spec.warm_start.studies:
        if source == name:
            raise StudyError(
                f"warm_start.from: {source!r} is this study itself; name an earlier study"
            )
        if not study_exists(storage, source):
            names = sorted(s.study_name for s in storage.get_all_studies() if s.study_name != name)
            known = f"; studies there: {', '.join(names)}" if names else ""
            raise StudyError(f"warm_start.from: no study {source!r} in the storage{known}")
        source_spec = stored_spec(storage, source)
        _refuse_other_measure(source, source_spec, spec)
        plans.append(_plan_one(storage, source, source_spec, spec))
    return plans


def enqueue_warm_start(study: optuna.Study, plans: list[WarmStart], n_slots: int) -> list[str]:
    """Queue each plan's configurations unless a run queued them already; the lines to show (what
    was queued, and each parameter dropped or clamped), or none when nothing was queued now."""
    lines = []
    for plan in plans:
        numbers = enqueue_once(study, f"{GUARD_PREFIX}{plan.source}", plan.trials, n_slots)
        if numbers is None:
            continue  # queued by an earlier run, or by a run beside this one
        lines += plan.notes
        left_out = len(plan.trials) - len(numbers)
        room = f" ({left_out} left out: the budget has no room)" if left_out else ""
        lines.append(
            f"warm start: {len(numbers)} configurations of study {plan.source!r} queued first{room}"
        )
    return lines


def _refuse_other_measure(source: str, source_spec: StudySpec, spec: StudySpec) -> None:
    if source_spec.task != spec.task:
        raise StudyError(
            f"warm_start.from: study {source!r} is a {source_spec.task} study and this one "
            f"{spec.task}; warm-start only from a study of the same task"
        )
    theirs, ours = source_spec.objective, spec.objective
    if (theirs.metric, theirs.direction) != (ours.metric, ours.direction):
        raise StudyError(
            f"warm_start.from: study {source!r} optimizes {theirs.metric} ({theirs.direction}) and "
            f"this one {ours.metric} ({ours.direction}); its best trials are not this study's, so "
            "warm-start from a study of the same objective"
        )


def _plan_one(storage, source: str, source_spec: StudySpec, spec: StudySpec) -> WarmStart:
    trials = storage.get_all_trials(
        storage.get_study_id_from_name(source), deepcopy=False, states=(TrialState.COMPLETE,)
    )
    reverse = source_spec.objective.direction == "maximize"
    ranked = sorted(trials, key=lambda t: t.value, reverse=reverse)[: spec.warm_start.top]
    queued, notes, seen = [], [], []
    for trial in ranked:
        origin = f"{source}#{trial.number}"
        params, said = map_params(trial.params, spec.searched_params)
        notes += [f"warm start from trial {trial.number} of {source!r}: {line}" for line in said]
        if params in seen:
            continue  # two source trials that are one configuration here
        seen.append(params)
        queued.append(QueuedTrial(params, {WARM_START_ATTR: origin}))
    return WarmStart(source, queued, notes)


def map_params(params: dict[str, Any], space: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`params` of another study mapped onto `space` (name -> FloatParam / IntParam /
    ChoiceParam): (the parameters kept, one line for each dropped or clamped)."""
    kept, said = {}, []
    for name, value in params.items():
        param = space.get(name)
        if param is None:
            said.append(f"{name} dropped (not in this search space)")
        elif isinstance(param, ChoiceParam):
            if _among(value, param.choices):
                kept[name] = value
            else:
                said.append(f"{name} {value!r} dropped (not among the choices {param.choices})")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            said.append(f"{name} {value!r} dropped (this search space's {name} is a number range)")
        else:
            low, high = param.bounds
            mapped = min(max(value, low), high)
            if isinstance(param, IntParam):
                mapped = round(mapped)
            if mapped != value:
                said.append(
                    f"{name} {value!r} clamped to {mapped!r} (the range is [{low}, {high}])"
                )
            kept[name] = mapped
    return kept, said


def _among(value: Any, choices: list[Any]) -> bool:
    """Whether `value` is one of `choices`, by type as well (True is not the choice 1)."""
    return any(type(value) is type(c) and value == c for c in choices)
