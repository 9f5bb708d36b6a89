"""Sampling a trial's parameters from the spec's search space, and splitting them by their user."""

from __future__ import annotations

from typing import Any, NamedTuple

import optuna

from hpsearch.spec.choice import SPEC_CHOICES
from hpsearch.spec.param import param_ends
from hpsearch.spec.schema import (
    GENERATION_SETTINGS,
    MODEL_KNOBS,
    ChoiceParam,
    FloatParam,
    IntParam,
    Param,
)
from hpsearch.spec.techniques import PEFT_PREFIX


def suggest_params(trial: optuna.Trial, space: dict[str, Param]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, param in space.items():
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


def split_params(values: dict[str, Any]) -> Settings:
    def others(k: str) -> bool:
        # The model and max_length a trial chose pick its spec (StudySpec.for_trial), not a setting.
        return (
            k in MODEL_KNOBS
            or k in GENERATION_SETTINGS
            or k in SPEC_CHOICES
            or k.startswith(PEFT_PREFIX)
        )

    return Settings(
        arguments={k: v for k, v in values.items() if not others(k)},
        knobs={k: v for k, v in values.items() if k in MODEL_KNOBS},
        generation={k: v for k, v in values.items() if k in GENERATION_SETTINGS},
        peft={k: v for k, v in values.items() if k.startswith(PEFT_PREFIX)},
    )


def corner_values(space: dict[str, Param]) -> list[dict[str, Any]]:
    """Each parameter at each end of its range (each choice), the others at their low end.

    Building TrainingArguments from each of these catches a bad value in the spec before any trial
    runs; a bad combination of otherwise valid values stays a failed trial.
    """
    low = {name: param_ends(param)[0] for name, param in space.items()}
    corners = [low]
    for name, param in space.items():
        corners += [{**low, name: value} for value in param_ends(param)[1:]]
    return corners
