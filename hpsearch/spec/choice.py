"""The spec values searched outside search_space: the base model (`model: {choice: [...]}`) and
`dataset.max_length: {choice: [...]}`.

Each is an Optuna categorical parameter of its own name (`model`, `max_length`), so the sampler,
the dashboard and every view see it as any other parameter. A trial trains with the spec its
parameters fix (`for_trial`): everything that rebuilds a trial later (best, export, train, a
re-run) does the same, from the trial's recorded parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from hpsearch.errors import HpsearchError
from hpsearch.spec.param import ChoiceParam, StrictModel
from hpsearch.tasks import LengthChoice

if TYPE_CHECKING:
    from hpsearch.spec.schema import StudySpec

MODEL_PARAM = "model"
MAX_LENGTH_PARAM = "max_length"
SPEC_CHOICES = (MODEL_PARAM, MAX_LENGTH_PARAM)
"""The trial parameters that pick the spec's model and max_length (no TrainingArguments field)."""


class ModelChoice(StrictModel):
    """`model: {choice: [package:..., distilbert-base-uncased, ./my-model]}`: the base model
    searched."""

    choices: tuple[str, ...] = Field(alias="choice")


def parse_model(value: Any) -> Any:
    """A model reference, or a ModelChoice of distinct ones; ValueError says what is wrong."""
    if isinstance(value, ModelChoice):
        return value
    if isinstance(value, str):
        if not value:
            raise ValueError("expected a model reference (a hub id, a directory or package:PKG)")
        return value
    shape = "expected a model reference or {choice: [model, model, ...]}"
    if not isinstance(value, dict) or set(value) != {"choice"}:
        raise ValueError(f"{shape}, got {value!r}")
    choices = value["choice"]
    if not isinstance(choices, list) or not choices:
        raise ValueError(f"{shape}, got choice: {choices!r}")
    for choice in choices:
        if not isinstance(choice, str) or not choice:
            raise ValueError(f"each choice is a model reference (a string), got {choice!r}")
    if len(set(choices)) != len(choices):
        raise ValueError(f"choices must be distinct, got {choices}")
    return ModelChoice(choice=tuple(choices))


def model_choices(spec: StudySpec) -> list[str]:
    """Every model the spec may train: its model, or each choice."""
    return list(spec.model.choices) if isinstance(spec.model, ModelChoice) else [spec.model]


def searched_choices(spec: StudySpec) -> dict[str, ChoiceParam]:
    """The model and max_length as searched parameters, where the spec searches them."""
    searched = {}
    if isinstance(spec.model, ModelChoice):
        searched[MODEL_PARAM] = ChoiceParam(choice=list(spec.model.choices))
    if isinstance(spec.dataset.max_length, LengthChoice):
        searched[MAX_LENGTH_PARAM] = ChoiceParam(choice=list(spec.dataset.max_length.choices))
    return searched


def describe_model(spec: StudySpec) -> str:
    """The model for a heading: itself, or 'searched: a | b' (each trial shows its own)."""
    if isinstance(spec.model, ModelChoice):
        return "searched: " + " | ".join(spec.model.choices)
    return spec.model


def for_trial(spec: StudySpec, params: dict[str, Any]) -> StudySpec:
    """`spec` as a trial with `params` trains it: its searched model and max_length fixed to the
    trial's; a spec that searches neither is returned as it is."""
    searched = searched_choices(spec)
    for name, param in searched.items():
        if name not in params:
            raise HpsearchError(
                f"the trial has no {name!r} parameter, but the study searches {name}; pick a "
                "trial the study ran"
            )
        if params[name] not in param.choices:
            raise HpsearchError(
                f"the trial's {name} {params[name]!r} is not one of the study's choices "
                f"{param.choices}"
            )
    update: dict[str, Any] = {}
    if MODEL_PARAM in searched:
        update["model"] = params[MODEL_PARAM]
    if MAX_LENGTH_PARAM in searched:
        length = params[MAX_LENGTH_PARAM]
        update["dataset"] = spec.dataset.model_copy(update={"max_length": length})
    return spec.model_copy(update=update) if update else spec
