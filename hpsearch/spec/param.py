"""A searched parameter of a spec: a float or int range, or a choice, each checked when parsed."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)


class StrictModel(BaseModel):
    """A spec section: unknown keys refused, values frozen, keys by name or alias."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Searched(StrictModel):
    # Left out of the stored form when unset, so an unconditional parameter is stored as before.
    when: dict[str, list[bool | int | float | str | None]] | None = Field(
        default=None, exclude_if=lambda when: when is None
    )
    """Sampled only in trials where each named parameter (a searched choice, or a fixed value)
    has one of the listed values (hpsearch/spec/condition.py); otherwise left out."""

    @field_validator("when", mode="before")
    @classmethod
    def _values_as_lists(cls, when: Any) -> Any:
        """`when: {OTHER: value}` is `when: {OTHER: [value]}`."""
        if isinstance(when, dict):
            if not when:
                raise ValueError("names no parameter; write when: {OTHER: value} or remove it")
            return {k: v if isinstance(v, list) else [v] for k, v in when.items()}
        return when


class FloatParam(_Searched):
    bounds: tuple[float, float] = Field(alias="float")
    log: bool = False
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        low, high = self.bounds
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"bounds must be finite numbers, got [{low}, {high}]")
        _check_range(low, high, self.log, self.step)
        return self


class IntParam(_Searched):
    bounds: tuple[int, int] = Field(alias="int")
    log: bool = False
    step: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(*self.bounds, self.log, self.step)
        return self


class ChoiceParam(_Searched):
    choices: list[bool | int | float | str | None] = Field(alias="choice", min_length=1)

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: list) -> list:
        if len({repr(c) for c in choices}) != len(choices):
            raise ValueError(f"choices must be distinct, got {choices}")
        return choices


def _check_range(low: float, high: float, log: bool, step: float | None) -> None:
    if low >= high:
        what = "empty" if low == high else "inverted"
        raise ValueError(
            f"range [{low}, {high}] is {what}: low must be below high "
            "(for a fixed value, put it under training: instead)"
        )
    if log and low <= 0:
        raise ValueError(f"log: true needs low > 0, got low={low}")
    if log and step is not None:
        raise ValueError("log and step cannot be combined; drop one of them")


def _param_kind(value: Any) -> str | None:
    # Validation passes the raw mapping; serialization passes the parsed model.
    for kind, model in (("float", FloatParam), ("int", IntParam), ("choice", ChoiceParam)):
        if isinstance(value, model):
            return kind
    if isinstance(value, dict):
        kinds = [k for k in ("float", "int", "choice") if k in value]
        if len(kinds) == 1:
            return kinds[0]
    return None


Param = Annotated[
    Annotated[FloatParam, Tag("float")]
    | Annotated[IntParam, Tag("int")]
    | Annotated[ChoiceParam, Tag("choice")],
    Discriminator(
        _param_kind,
        custom_error_type="param_kind",
        custom_error_message=(
            "a parameter needs exactly one of float: [low, high], int: [low, high] "
            "or choice: [values]"
        ),
    ),
]


def is_param(value: Any) -> bool:
    """A searched value (a parsed float, int or choice parameter), not a fixed one."""
    return isinstance(value, (FloatParam, IntParam, ChoiceParam))


def param_ends(param: Param | list[Param]) -> list[Any]:
    """Both ends of a range, or every choice; of each alternative, for a parameter that has
    several (hpsearch/spec/condition.py)."""
    if isinstance(param, list):
        ends = [value for alternative in param for value in param_ends(alternative)]
        return [value for i, value in enumerate(ends) if repr(value) not in map(repr, ends[:i])]
    if isinstance(param, ChoiceParam):
        return list(param.choices)
    return list(param.bounds)


def _entry_kind(value: Any) -> str:
    return "alternatives" if isinstance(value, list) else "param"


# A search_space entry: one parameter, or a list of alternatives for one name, each with its own
# `when:` (hpsearch/spec/condition.py).
SearchEntry = Annotated[
    Annotated[Param, Tag("param")] | Annotated[list[Param], Tag("alternatives")],
    Discriminator(_entry_kind),
]
