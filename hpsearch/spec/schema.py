"""The study spec's schema: what `studies/<name>.yaml` may declare, every key and value checked.

Only the shape and the values are checked here (no file system, no transformers import); `check.py`
adds the checks that need the model and data files, and `hpsearch.trial.arguments` the
`TrainingArguments` fields.
"""

from __future__ import annotations

import difflib
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from hpsearch.errors import SpecError

# What one evaluation returns (see hpsearch/trial/metrics.py), without the "eval_" prefix Trainer adds.
METRICS = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "loss")
# Knobs applied to the model rather than to TrainingArguments (see hpsearch/trial/model.py).
MODEL_KNOBS = ("dropout", "freeze_embeddings", "freeze_layers")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FloatParam(_Strict):
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


class IntParam(_Strict):
    bounds: tuple[int, int] = Field(alias="int")
    log: bool = False
    step: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(*self.bounds, self.log, self.step)
        return self


class ChoiceParam(_Strict):
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
    Annotated[FloatParam, Tag("float")] | Annotated[IntParam, Tag("int")] | Annotated[ChoiceParam, Tag("choice")],
    Discriminator(
        _param_kind,
        custom_error_type="param_kind",
        custom_error_message=(
            "a parameter needs exactly one of float: [low, high], int: [low, high] "
            "or choice: [values]"
        ),
    ),
]


class DatasetSpec(_Strict):
    source: str = Field(min_length=1)
    """A hub dataset name, a local csv/tsv/json/jsonl/parquet file, or package:PKG/path/in/it."""
    subset: str | None = None
    """The hub dataset's configuration name (e.g. `sst2` of `glue`)."""
    split: str = "train"
    """The hub split to train on."""
    eval_split: str | None = None
    """A named hub split to evaluate on, instead of eval_fraction."""
    eval_source: str | None = None
    """A separate local or package file to evaluate on, instead of eval_fraction."""
    eval_fraction: float | None = Field(default=None, gt=0, lt=1)
    encoding: str = "utf-8"
    text: str = "text"
    text_pair: str | None = None
    label: str = "label"
    max_train_samples: int | None = Field(default=None, ge=1)
    max_eval_samples: int | None = Field(default=None, ge=1)
    max_length: int = Field(default=128, ge=8, le=8192)
    seed: int = 0
    """Seeds the train/eval split and the caps."""

    @model_validator(mode="after")
    def _one_eval_set(self) -> DatasetSpec:
        given = [k for k in ("eval_split", "eval_source", "eval_fraction") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give one of eval_split, eval_source, eval_fraction, not {given}")
        return self

    @property
    def resolved_eval_fraction(self) -> float | None:
        if self.eval_split or self.eval_source:
            return None
        return self.eval_fraction or 0.1


class ObjectiveSpec(_Strict):
    metric: str
    direction: Literal["maximize", "minimize"] | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        name = metric.removeprefix("eval_")
        if name not in METRICS:
            raise ValueError(
                f"unknown metric {metric!r}; the evaluation returns {', '.join(METRICS)}"
            )
        return name

    @model_validator(mode="after")
    def _sensible_direction(self) -> ObjectiveSpec:
        natural = "minimize" if self.metric == "loss" else "maximize"
        if self.direction is None:
            object.__setattr__(self, "direction", natural)
        elif self.direction != natural:
            raise ValueError(
                f"direction {self.direction} for {self.metric} would search for the worst model; "
                f"use direction: {natural}"
            )
        return self

    @property
    def eval_key(self) -> str:
        """The key under which Trainer.evaluate() returns the metric."""
        return f"eval_{self.metric}"


def _refuse_settings_not_taken(section: str, spec: BaseModel, takers: dict[str, tuple[str, ...]]) -> None:
    """A setting the chosen algorithm ignores is a mistake: say which algorithms take it."""
    for setting, names in takers.items():
        if getattr(spec, setting) is not None and spec.name not in names:
            raise ValueError(
                f"the {spec.name} {section} takes no {setting} (only {' and '.join(names)} "
                f"{'does' if len(names) == 1 else 'do'}); remove it, or use name: {' or '.join(names)}"
            )


class SamplerSpec(_Strict):
    name: Literal["tpe", "random", "gp", "cmaes", "qmc"] = "tpe"
    seed: int | None = 0
    n_startup_trials: int | None = Field(default=None, ge=0)
    """tpe / gp / cmaes: random trials before the model-based search starts."""

    @model_validator(mode="after")
    def _settings_taken(self) -> SamplerSpec:
        _refuse_settings_not_taken("sampler", self, {"n_startup_trials": ("tpe", "gp", "cmaes")})
        return self


class PrunerSpec(_Strict):
    name: Literal["hyperband", "successive_halving", "median", "none"] = "hyperband"
    evals_per_epoch: int = Field(default=4, ge=1, le=100)
    """Evaluations per epoch: the rungs the pruner acts on."""
    min_resource: int | None = Field(default=None, ge=1)
    """hyperband / successive_halving: evaluations before the first pruning decision."""
    reduction_factor: int | None = Field(default=None, ge=2)
    n_startup_trials: int | None = Field(default=None, ge=0)
    """median: trials that complete before any pruning."""
    n_warmup_steps: int | None = Field(default=None, ge=0)
    """median: evaluations of a trial before it can be pruned."""

    @model_validator(mode="after")
    def _settings_taken(self) -> PrunerSpec:
        halving, median = ("hyperband", "successive_halving"), ("median",)
        _refuse_settings_not_taken("pruner", self, {
            "min_resource": halving, "reduction_factor": halving,
            "n_startup_trials": median, "n_warmup_steps": median,
        })
        return self


class BudgetSpec(_Strict):
    n_trials: int = Field(ge=1)
    """Study-wide number of trials, across all runs and workers."""
    timeout: float | None = Field(default=None, gt=0)
    """Seconds after which one run starts no new trial."""


class HeartbeatSpec(_Strict):
    """How a trial whose worker died (kill -9, machine lost) is found and re-run."""

    interval: int = Field(default=10, ge=1)
    """Seconds between a running trial's heartbeats."""
    grace_period: int = Field(default=60, ge=2)
    """A running trial silent this long is failed and re-queued with the same parameters."""
    max_retries: int = Field(default=3, ge=0)
    """How many times one trial is re-queued after losing its worker."""

    @model_validator(mode="after")
    def _grace_exceeds_interval(self) -> HeartbeatSpec:
        if self.grace_period <= self.interval:
            raise ValueError(
                f"grace_period ({self.grace_period}s) must exceed interval ({self.interval}s), "
                "or live trials would be failed"
            )
        return self


class StudySpec(_Strict):
    model: str = Field(min_length=1)
    """A hub model id, a local directory, or package:PKG[/path] (a model shipped in a package)."""
    dataset: DatasetSpec
    objective: ObjectiveSpec
    search_space: dict[str, Param] = Field(min_length=1)
    training: dict[str, Any] = Field(default_factory=dict)
    """Fixed TrainingArguments fields and model knobs, the same in every trial."""
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    budget: BudgetSpec
    heartbeat: HeartbeatSpec = HeartbeatSpec()
    seed: int = 0
    """Trial k trains with seed + k, so every trial is reproducible from its record."""

    @model_validator(mode="after")
    def _no_param_twice(self) -> StudySpec:
        both = sorted(set(self.search_space) & set(self.training))
        if both:
            raise ValueError(
                f"{', '.join(both)} is both searched and fixed; keep it in one of "
                "search_space: or training:"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form stored with the study; `StudySpec.model_validate` reads it back."""
        return self.model_dump(mode="json", by_alias=True)


def parse_spec(data: Any, origin: str) -> StudySpec:
    """Validate a spec mapping; `origin` names where it came from in error messages."""
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: expected a mapping of keys (model:, dataset:, ...), got {type(data).__name__}")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(f"{origin}: {_describe(e)}") from None


def _describe(error: ValidationError) -> str:
    """One line for the first problem, naming the key and how to fix it."""
    first = error.errors()[0]
    parts = [str(part) for part in first["loc"]]
    # search_space.<name>.<union tag>.<field>: the tag repeats what the user wrote; drop it.
    if parts[:1] == ["search_space"] and len(parts) > 2 and parts[2] in ("float", "int", "choice"):
        del parts[2]
    loc = ".".join(parts)
    if first["type"] == "extra_forbidden":
        key = str(first["loc"][-1])
        close = difflib.get_close_matches(key, _known_keys(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else "; see README.md for the keys a spec takes"
        message = f"unknown key{hint}"
    elif first["type"] == "missing":
        message = "missing; this key is required"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] not in ("value_error", "param_kind") and "input" in first:
            message += f", got {first['input']!r}"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{loc}: {message}{suffix}" if loc else f"{message}{suffix}"


def _known_keys() -> list[str]:
    models = (StudySpec, DatasetSpec, ObjectiveSpec, SamplerSpec, PrunerSpec, BudgetSpec,
              HeartbeatSpec, FloatParam, IntParam, ChoiceParam)
    return [field.alias or name for m in models for name, field in m.model_fields.items()]
