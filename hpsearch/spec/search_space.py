"""Sampling a trial's parameters from the spec's search space, and splitting them by their user."""

from __future__ import annotations

from typing import Any, NamedTuple

import optuna

from hpsearch.spec.augment import AUGMENT_PREFIX
from hpsearch.spec.choice import SPEC_CHOICES
from hpsearch.spec.condition import Entry, active_param, alternatives, sampling_order
from hpsearch.spec.distill import DISTILL_PREFIX
from hpsearch.spec.param import param_ends
from hpsearch.spec.schema import (
    GENERATION_SETTINGS,
    MODEL_KNOBS,
    ChoiceParam,
    FloatParam,
    IntParam,
)
from hpsearch.spec.techniques import PEFT_PREFIX


def suggest_params(
    trial: optuna.Trial, space: dict[str, Entry], fixed: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A trial's parameters: each whose condition holds (on the parameters sampled before it, or
    on the `fixed` values), from its alternative that holds; the others are left out."""
    params: dict[str, Any] = {}
    for name in sampling_order(space):
        param = active_param(space[name], {**(fixed or {}), **params})
        if param is None:
            continue
        if isinstance(param, FloatParam):
            params[name] = trial.suggest_float(name, *param.bounds, log=param.log, step=param.step)
        elif isinstance(param, IntParam):
            params[name] = trial.suggest_int(
                name, *param.bounds, log=param.log, step=param.step or 1
            )
        elif isinstance(param, ChoiceParam):
            params[name] = trial.suggest_categorical(name, param.choices)
        else:  # pragma: no cover - the spec admits only the three kinds
            raise TypeError(f"unknown parameter kind {type(param).__name__}")
    return params


class Settings(NamedTuple):
    """Fixed or sampled values, split by what they set."""

    arguments: dict[str, Any]
    """TrainingArguments fields."""
    knobs: dict[str, Any]
    """Model knobs (MODEL_KNOBS)."""
    generation: dict[str, Any]
    """Generation settings (GENERATION_SETTINGS)."""
    peft: dict[str, Any]
    """Searched peft values (peft.r, ...); PeftSpec.resolve adds the fixed ones."""
    distill: dict[str, Any]
    """Searched distill values (distill.alpha, ...); DistillSpec.resolve adds the fixed ones."""


def split_params(values: dict[str, Any]) -> Settings:
    def others(k: str) -> bool:
        # The model and max_length a trial chose pick its spec (StudySpec.for_trial), not a setting.
        return (
            k in MODEL_KNOBS
            or k in GENERATION_SETTINGS
            or k in SPEC_CHOICES
            # peft.<key>: the adapters; distill.<key>: the teacher's loss (trial/distill.py);
            # augment.<key>: the trial's training rows (trial/augment.py)
            or k.startswith((PEFT_PREFIX, DISTILL_PREFIX, AUGMENT_PREFIX))
        )

    return Settings(
        arguments={k: v for k, v in values.items() if not others(k)},
        knobs={k: v for k, v in values.items() if k in MODEL_KNOBS},
        generation={k: v for k, v in values.items() if k in GENERATION_SETTINGS},
        peft={k: v for k, v in values.items() if k.startswith(PEFT_PREFIX)},
        distill={k: v for k, v in values.items() if k.startswith(DISTILL_PREFIX)},
    )


def corner_values(
    space: dict[str, Entry], fixed: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Each parameter at each end of its range (each choice), of each alternative, the others at
    their low end; each time with the parameters it depends on set so that it is sampled, and
    only the parameters a trial would sample.

    Building TrainingArguments from each of these catches a bad value in the spec before any trial
    runs; a bad combination of otherwise valid values stays a failed trial.
    """
    fixed = fixed or {}
    corners: list[dict[str, Any]] = []
    for name, entry in space.items():
        for param in alternatives(entry):
            for value in param_ends(param):
                pinned = {**_satisfying(param.when, space), name: value}
                corner = _walk(space, fixed, pinned)
                sampled = active_param(entry, {**fixed, **corner}) is param
                if sampled and corner not in corners:
                    corners.append(corner)
    return corners


def _satisfying(when: dict[str, list] | None, space: dict[str, Entry]) -> dict[str, Any]:
    """Values of the searched choices `when` names (and of those their conditions name) under
    which it holds: the first value it lists of each."""
    pinned: dict[str, Any] = {}
    for other, allowed in (when or {}).items():
        if other in space:
            pinned = {**_satisfying(alternatives(space[other])[0].when, space), **pinned}
            pinned[other] = allowed[0]
    return pinned


def _walk(space: dict[str, Entry], fixed: dict[str, Any], pinned: dict[str, Any]) -> dict:
    """The parameters a trial samples where those in `pinned` take their pinned value and every
    other its low end."""
    values: dict[str, Any] = {}
    for name in sampling_order(space):
        param = active_param(space[name], {**fixed, **values})
        if param is not None:
            values[name] = pinned.get(name, param_ends(param)[0])
    return values
