"""Knowledge distillation (`distill:`): each trial's model, the student, learns from a teacher's
logits as well as from the labels. The teacher is another study's kept model or a directory; its
logits are computed once per training set (hpsearch.trial.teacher). `temperature`, `alpha` and
`student_layers` are fixed or searched like any parameter (`distill.alpha` among a trial's
parameters). Only the shape and values are checked here; the teacher itself is checked against the
student's task, labels and tokenizer when the data loads, before any trial runs."""

from __future__ import annotations

import re
from typing import Any, Union

from pydantic import field_validator, model_validator

from hpsearch.spec.param import Param, StrictModel, is_param, param_ends

# The prefix of a searched or fixed `distill:` value among a trial's parameters ("distill.alpha").
DISTILL_PREFIX = "distill."
# The tasks whose output is one distribution per example or per token: the logits a teacher gives.
DISTILLED_TASKS = ("text-classification", "token-classification")

BEST_OF = "best-of:"
TRIAL_OF = "trial:"
_TRIAL_REFERENCE = re.compile(r"^trial:(?P<study>.+)/(?P<number>\d+)$")

Searchable = Union[Param, int, float]  # noqa: UP007


class DistillSpec(StrictModel):
    """Train on alpha x task loss + (1 - alpha) x T^2 x KL(teacher's softmax at T, student's at T)
    (Hinton et al., 2015): T^2 keeps the soft term's gradients at the task loss's scale."""

    teacher: str
    """best-of:STUDY (the kept best model of a study in the same storage), trial:STUDY/N (a kept
    trial model), or a directory holding a saved model."""
    temperature: Searchable = 2.0
    """Softens both distributions: above 1 the teacher's small logits carry information."""
    alpha: Searchable = 0.5
    """The weight of the task loss; 1 - alpha goes to matching the teacher."""
    student_layers: Searchable | None = None
    """Keep the bottom K transformer layers of the spec's model (the DistilBERT recipe, from
    the bottom); default: every layer."""

    @field_validator("teacher")
    @classmethod
    def _teacher_reference(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty; name best-of:STUDY, trial:STUDY/N or a model")
        if value.startswith(BEST_OF) and not value[len(BEST_OF) :].strip():
            raise ValueError("best-of: names no study; write best-of:STUDY")
        if value.startswith(TRIAL_OF) and not _TRIAL_REFERENCE.match(value):
            raise ValueError(
                f"{value!r} is not trial:STUDY/N (N a trial number), e.g. trial:sentiment/3"
            )
        return value

    @model_validator(mode="after")
    def _values_in_range(self) -> DistillSpec:
        rules = {
            "temperature": (lambda v: _is_number(v) and v > 0, "a number above 0"),
            "alpha": (lambda v: _is_number(v) and 0 <= v <= 1, "a weight in [0, 1]"),
            "student_layers": (
                lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                "an integer of at least 1 (layers kept)",
            ),
        }
        for name, (valid, expected) in rules.items():
            value = getattr(self, name)
            for candidate in param_ends(value) if is_param(value) else [value]:
                if not valid(candidate):
                    raise ValueError(f"distill.{name}: {candidate!r} is not {expected}")
        return self

    @property
    def teacher_kind(self) -> str:
        """best-of, trial or directory."""
        if self.teacher.startswith(BEST_OF):
            return "best-of"
        return "trial" if self.teacher.startswith(TRIAL_OF) else "directory"

    @property
    def teacher_study(self) -> tuple[str, int | None]:
        """(study, trial number or None for its best) of a best-of: or trial: teacher."""
        if self.teacher_kind == "best-of":
            return self.teacher[len(BEST_OF) :].strip(), None
        match = _TRIAL_REFERENCE.match(self.teacher)
        return match["study"], int(match["number"])

    def searched(self) -> dict[str, Any]:
        """The searched values as search-space parameters, named distill.<key>."""
        return {
            f"{DISTILL_PREFIX}{name}": value
            for name in _SETTINGS
            if is_param(value := getattr(self, name))
        }

    def fixed(self) -> dict[str, Any]:
        """The fixed values, named distill.<key> as the searched are (a condition may name them)."""
        return {
            f"{DISTILL_PREFIX}{name}": value
            for name in _SETTINGS
            if not is_param(value := getattr(self, name))
        }

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's temperature, alpha and student_layers: the fixed values, and `params`'
        distill.<key> for the searched (a searched value the trial left out takes its default)."""
        values = {}
        for name in _SETTINGS:
            value = getattr(self, name)
            if is_param(value):
                value = params.get(f"{DISTILL_PREFIX}{name}", type(self).model_fields[name].default)
            values[name] = value
        return values


_SETTINGS = ("temperature", "alpha", "student_layers")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_distilled_task(task: str) -> None:
    """Distillation matches per-example (or per-token) label distributions; a generative task's
    outputs are sequences, which hpsearch does not distill."""
    if task not in DISTILLED_TASKS:
        raise ValueError(
            f"distill: the {task} task cannot be distilled (only "
            f"{' and '.join(DISTILLED_TASKS)} can); remove distill:"
        )
