"""The fine-tuning techniques a spec declares in sections of their own: PEFT methods (`peft:`)
and early stopping (`early_stopping:`). The model knobs (layer_lr_decay, gradual_unfreezing, ...)
are training values and live in schema.MODEL_KNOBS."""

from __future__ import annotations

from typing import Any, Union

from pydantic import Field, model_validator

from hpsearch.spec.param import ChoiceParam, Param, StrictModel, is_param, param_ends

# The prefix of a searched `peft:` value among a trial's parameters ("peft.r").
PEFT_PREFIX = "peft."


# A peft value is fixed (r: 8) or searched with the syntax of any parameter (r: {int: [4, 32]}).
Searchable = Union[Param, bool, int, float, str, list[str]]  # noqa: UP007


# The PEFT methods a spec may name, and which of them fold into the pretrained weights (export
# writes plain weights for those; the others stay an adapter that PEFT loads onto the base model).
PEFT_METHODS = ("lora", "ia3", "prompt_tuning", "prefix_tuning")
MERGEABLE_METHODS = ("lora", "ia3")
PROMPT_METHODS = ("prompt_tuning", "prefix_tuning")
# The methods that take each method's own key, and its value where the spec leaves it out.
METHOD_KEYS = {
    "r": ("lora",),
    "alpha": ("lora",),
    "dropout": ("lora",),
    "bias": ("lora",),
    "use_dora": ("lora",),
    "target_modules": ("lora", "ia3"),
    "num_virtual_tokens": PROMPT_METHODS,
}
METHOD_DEFAULTS = {
    "r": 8,
    "alpha": 16,
    "dropout": 0.1,
    "bias": "none",
    "use_dora": False,
    "target_modules": None,
    "num_virtual_tokens": 20,
}
# The LoRA keys a fixed `method: lora` spec stores with their defaults, as before methods existed,
# so that a study stored then resumes with the same spec.
STORED_LORA_DEFAULTS = ("r", "alpha", "dropout", "bias")


def _unset() -> Any:
    """A method's own key left out: None, and left out of the stored form."""
    return Field(default=None, exclude_if=lambda value: value is None)


class PeftSpec(StrictModel):
    """Parameter-efficient fine-tuning through PEFT: the pretrained weights stay frozen, and only
    the method's few parameters and the task's new head train. Each value is fixed or searched,
    the method too (`method: {choice: [lora, ia3]}`, its keys conditional on it with
    `when: {peft.method: ...}`); a key belongs to the methods of METHOD_KEYS."""

    method: Searchable = "lora"
    """lora (with use_dora: DoRA), ia3, prompt_tuning or prefix_tuning."""
    r: Searchable | None = _unset()
    """lora: the adapters' rank (default 8)."""
    alpha: Searchable | None = _unset()
    """lora: the adapters' scale numerator, an update is scaled by alpha / r (default 16)."""
    dropout: Searchable | None = _unset()
    """lora: dropout on the adapters' input (default 0.1)."""
    target_modules: Searchable | None = _unset()
    """lora, ia3: module names (or "all-linear") that get adapters; default: PEFT's choice for
    the model's architecture (query and value for BERT under LoRA), else every linear layer."""
    bias: Searchable | None = _unset()
    """lora: which biases train: none, all or lora_only (default none)."""
    use_dora: Searchable | None = _unset()
    """lora: DoRA, each weight's update split into a magnitude and a LoRA direction (default
    false)."""
    num_virtual_tokens: Searchable | None = _unset()
    """prompt_tuning, prefix_tuning: trained virtual tokens (default 20)."""

    @model_validator(mode="before")
    @classmethod
    def _lora_defaults_stored(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("method", "lora") == "lora":
            return {**{k: METHOD_DEFAULTS[k] for k in STORED_LORA_DEFAULTS}, **data}
        return data

    @model_validator(mode="after")
    def _values_in_range(self) -> PeftSpec:
        rules = {
            "method": (lambda v: v in PEFT_METHODS, f"one of {', '.join(PEFT_METHODS)}"),
            "r": (
                lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                "an integer of at least 1",
            ),
            "alpha": (lambda v: _is_number(v) and v > 0, "a number above 0"),
            "dropout": (lambda v: _is_number(v) and 0 <= v < 1, "a probability in [0, 1)"),
            "bias": (lambda v: v in ("none", "all", "lora_only"), "one of none, all, lora_only"),
            "use_dora": (lambda v: isinstance(v, bool), "true or false"),
            "target_modules": (
                lambda v: (
                    (isinstance(v, str) and v != "")
                    or (isinstance(v, list) and v and all(isinstance(m, str) for m in v))
                ),
                'module names ([query, value]) or "all-linear"',
            ),
            "num_virtual_tokens": (
                lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                "an integer of at least 1",
            ),
        }
        if is_param(self.method) and not isinstance(self.method, ChoiceParam):
            raise ValueError(
                "peft.method: searched as a range; search it as a choice: "
                "{choice: [lora, ia3, ...]}"
            )
        for name, (valid, expected) in rules.items():
            value = getattr(self, name)
            for candidate in param_ends(value) if is_param(value) else [value]:
                if value is not None and not valid(candidate):
                    raise ValueError(f"peft.{name}: {candidate!r} is not {expected}")
        for name in METHOD_KEYS:
            self._check_taken(name)
        return self

    def _check_taken(self, name: str) -> None:
        """A method's own key is taken by the method, or, with the method searched, by some of its
        choices, and (when searched) sampled only in the trials that draw one of those."""
        value, takers = getattr(self, name), METHOD_KEYS[name]
        if value is None:
            return
        methods = self.methods
        takes = " and ".join(takers) + (" takes" if len(takers) == 1 else " take")
        if not set(methods) & set(takers):
            which = (
                f"the {methods[0]} method takes no {name}"
                if len(methods) == 1
                else f"no searched method takes {name}"
            )
            raise ValueError(
                f"peft.{name}: {which} (only {takes} it); remove it, or use method: {takers[0]}"
            )
        others = [m for m in methods if m not in takers]
        if not others or not is_param(value):
            return  # a fixed value applies to the methods that take it
        drawn = (value.when or {}).get(f"{PEFT_PREFIX}method")
        if drawn is None or any(m not in takers for m in drawn):
            raise ValueError(
                f"peft.{name}: only {takes} it, and peft.method also draws {', '.join(others)}; "
                f"add when: {{peft.method: [{', '.join(m for m in methods if m in takers)}]}}"
            )

    @property
    def methods(self) -> list[str]:
        """The method, or every method searched."""
        return list(self.method.choices) if is_param(self.method) else [self.method]

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
            if getattr(self, name) is not None and not is_param(getattr(self, name))
        }

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's PEFT settings: its method and that method's keys, each the fixed value, or
        `params`' peft.<key> for a searched one (left out, its condition false: the default)."""

        def value(name: str, default: Any) -> Any:
            given = getattr(self, name)
            if given is None:
                return default
            return params.get(f"{PEFT_PREFIX}{name}", default) if is_param(given) else given

        method = value("method", "lora")
        values = {"method": method}
        for name, takers in METHOD_KEYS.items():
            if method in takers:
                values[name] = value(name, METHOD_DEFAULTS[name])
        modules = values.get("target_modules")
        if isinstance(modules, str) and modules != "all-linear":
            # A choice among module sets is written "query,value".
            values["target_modules"] = [m.strip() for m in modules.split(",")]
        return values


def check_peft_fits(peft: PeftSpec, task: str, sections: dict[str, dict[str, Any]]) -> None:
    """Refuse what PEFT cannot do with the spec's task or model knobs (`sections`: search_space
    and training, by name), naming the key."""
    if task == "token-classification" and "prompt_tuning" in peft.methods:
        raise ValueError(
            "peft.method: prompt_tuning cannot tag tokens: PEFT prepends its virtual tokens to the "
            "input but not to the tags, so they no longer line up; use lora or ia3"
        )
    prompts = [m for m in peft.methods if m in PROMPT_METHODS]
    decayed = [name for name, values in sections.items() if "layer_lr_decay" in values]
    if prompts and decayed:
        raise ValueError(
            f"{decayed[0]}.layer_lr_decay: {' and '.join(prompts)} trains virtual tokens outside "
            "the layer stack, so there is no layer to decay the rate by; remove it (or use lora "
            "or ia3)"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class EarlyStoppingSpec(StrictModel):
    """Stop a trial whose objective has not improved for `patience` evaluations. It ends COMPLETE:
    the trial stopped itself, the pruner did not stop it."""

    patience: int = Field(ge=1)
    """Evaluations without an improvement before the trial stops."""
    min_delta: float = Field(default=0.0, ge=0)
    """An improvement smaller than this does not count."""
