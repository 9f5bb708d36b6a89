"""The fine-tuning techniques a spec declares in sections of their own: LoRA adapters (`peft:`)
and early stopping (`early_stopping:`). The model knobs (layer_lr_decay, gradual_unfreezing, ...)
are training values and live in schema.MODEL_KNOBS."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, model_validator

from hpsearch.spec.param import Param, StrictModel, is_param, param_ends

# The prefix of a searched `peft:` value among a trial's parameters ("peft.r").
PEFT_PREFIX = "peft."


# A peft value is fixed (r: 8) or searched with the syntax of any parameter (r: {int: [4, 32]}).
Searchable = Union[Param, bool, int, float, str, list[str]]  # noqa: UP007


class PeftSpec(StrictModel):
    """LoRA adapters through PEFT: the pretrained weights stay frozen, low-rank updates of the
    target modules and the task's new head train. Each value is fixed or searched."""

    method: Literal["lora"] = "lora"
    r: Searchable = 8
    """The adapters' rank."""
    alpha: Searchable = 16
    """The adapters' scale numerator (an update is scaled by alpha / r)."""
    dropout: Searchable = 0.1
    """Dropout on the adapters' input."""
    target_modules: Searchable | None = None
    """Module names (or "all-linear") that get adapters; default: PEFT's choice for the model's
    architecture (query and value for BERT), else every linear layer."""
    bias: Searchable = "none"
    """Which biases train: none, all or lora_only."""

    @model_validator(mode="after")
    def _values_in_range(self) -> PeftSpec:
        rules = {
            "r": (
                lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                "an integer of at least 1",
            ),
            "alpha": (lambda v: _is_number(v) and v > 0, "a number above 0"),
            "dropout": (lambda v: _is_number(v) and 0 <= v < 1, "a probability in [0, 1)"),
            "bias": (lambda v: v in ("none", "all", "lora_only"), "one of none, all, lora_only"),
            "target_modules": (
                lambda v: (
                    v is None
                    or (isinstance(v, str) and v != "")
                    or (isinstance(v, list) and v and all(isinstance(m, str) for m in v))
                ),
                'module names ([query, value]) or "all-linear"',
            ),
        }
        for name, (valid, expected) in rules.items():
            value = getattr(self, name)
            for candidate in param_ends(value) if is_param(value) else [value]:
                if not valid(candidate):
                    raise ValueError(f"peft.{name}: {candidate!r} is not {expected}")
        return self

    def searched(self) -> dict[str, Any]:
        """The searched values as search-space parameters, named peft.<key>."""
        return {
            f"{PEFT_PREFIX}{name}": getattr(self, name)
            for name in type(self).model_fields
            if is_param(getattr(self, name))
        }

    def fixed(self) -> dict[str, Any]:
        """The fixed values, named peft.<key> as the searched are."""
        return {
            f"{PEFT_PREFIX}{name}": getattr(self, name)
            for name in type(self).model_fields
            if not is_param(getattr(self, name))
        }

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's LoRA settings: the fixed values, and `params`' peft.<key> for the searched
        (a searched value the trial left out, its condition false, takes its default)."""
        values = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if not is_param(value):
                values[name] = value
            else:
                values[name] = params.get(f"{PEFT_PREFIX}{name}", field.default)
        if isinstance(values["target_modules"], str) and values["target_modules"] != "all-linear":
            # A choice among module sets is written "query,value".
            values["target_modules"] = [m.strip() for m in values["target_modules"].split(",")]
        return values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class EarlyStoppingSpec(StrictModel):
    """Stop a trial whose objective has not improved for `patience` evaluations. It ends COMPLETE:
    the trial stopped itself, the pruner did not stop it."""

    patience: int = Field(ge=1)
    """Evaluations without an improvement before the trial stops."""
    min_delta: float = Field(default=0.0, ge=0)
    """An improvement smaller than this does not count."""
