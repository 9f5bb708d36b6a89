"""The study spec's schema: what `studies/<name>.yaml` may declare, every key and value checked.

Only the shape and the values are checked here (no file system, no transformers import); `check.py`
adds the checks that need the model and data files, and `hpsearch.trial.arguments` the
`TrainingArguments` fields.
"""

from __future__ import annotations

import difflib
import math
from typing import Annotated, Any, Literal, Union

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
from hpsearch.tasks import DEFAULT_TASK, TASK_KEY, TASKS, Task

# Knobs applied to the model rather than to TrainingArguments (see hpsearch/trial/model.py and
# hpsearch/trial/layers.py): its dropout, the layers it trains, and their learning rates.
MODEL_KNOBS = ("dropout", "freeze_embeddings", "freeze_layers", "layer_lr_decay", "gradual_unfreezing")
# The prefix of a searched `peft:` value among a trial's parameters ("peft.r").
PEFT_PREFIX = "peft."
# Settings of the model's generation config, used when evaluation generates (seq2seq); searchable
# like training arguments, which `Trainer.hyperparameter_search` cannot do (transformers#33755).
GENERATION_SETTINGS = ("num_beams", "max_new_tokens", "length_penalty", "no_repeat_ngram_size")


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


def _dataset_task(value: Any) -> str | None:
    """The task whose schema the dataset section follows (StudySpec copies it in)."""
    if isinstance(value, dict):
        return value.get(TASK_KEY)
    return getattr(value, TASK_KEY, None)


DatasetSpec = Annotated[
    Union[tuple(Annotated[task.Dataset, Tag(name)] for name, task in TASKS.items())],  # noqa: UP007
    Discriminator(
        _dataset_task,
        custom_error_type="dataset_kind",
        custom_error_message="expected a mapping of keys (source:, ...)",
    ),
]


class ObjectiveSpec(_Strict):
    metric: str
    """A metric the task's evaluation returns (see hpsearch/tasks/); "eval_" may prefix it."""
    direction: Literal["maximize", "minimize"] | None = None
    value: Literal["last", "best"] = "last"
    """A trial's value: its last evaluation, or its best one (then its kept model is the weights
    of that evaluation, held in memory, never written as checkpoints)."""

    @field_validator("metric")
    @classmethod
    def _without_prefix(cls, metric: str) -> str:
        return metric.removeprefix("eval_")

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


# The pruning defaults, chosen from the anytime curves and the pruning replay (BENCHMARKS.md).
DEFAULT_FIRST_RUNG = 0.5  # epochs
DEFAULT_MIN_TRIALS = 4


class PrunerSpec(_Strict):
    name: Literal["hyperband", "successive_halving", "median", "none"] = "hyperband"
    evals_per_epoch: int = Field(default=4, ge=1, le=100)
    """Evaluations per epoch: the rungs the pruner acts on."""
    first_rung: float | None = Field(default=None, gt=0, le=100)
    """Epochs a trial trains before it can first be pruned (default 0.5). Earlier, learning rates
    still warming up look alike and the eval set's noise decides (BENCHMARKS.md)."""
    min_trials: int | None = Field(default=None, ge=0)
    """Trials that complete before any trial is pruned (default 4). The pruner still records their
    evaluations, so the first pruned trial is measured against them, not against one other trial."""
    min_resource: int | None = Field(default=None, ge=1)
    """hyperband / successive_halving: evaluations before the first pruning decision (instead of
    first_rung)."""
    reduction_factor: int | None = Field(default=None, ge=2)
    n_startup_trials: int | None = Field(default=None, ge=0)
    """median: Optuna's name for min_trials (trials that complete before any pruning)."""
    n_warmup_steps: int | None = Field(default=None, ge=0)
    """median: evaluations of a trial before it can be pruned (instead of first_rung)."""

    @model_validator(mode="after")
    def _settings_taken(self) -> PrunerSpec:
        halving, median = ("hyperband", "successive_halving"), ("median",)
        _refuse_settings_not_taken("pruner", self, {
            "min_resource": halving, "reduction_factor": halving,
            "n_startup_trials": median, "n_warmup_steps": median,
        })
        # (None, not "left out": a stored spec comes back with every key, unset ones as None.)
        for exact in ("min_resource", "n_warmup_steps"):
            if self.first_rung is not None and getattr(self, exact) is not None:
                raise ValueError(f"the pruner takes first_rung (in epochs) or {exact} (in evaluations), "
                                 "not both; remove one")
        if self.min_trials is not None and self.n_startup_trials is not None:
            raise ValueError("min_trials and n_startup_trials say the same for the median pruner; remove one")
        return self

    @property
    def first_rung_evals(self) -> int:
        """The evaluation at which a trial can first be pruned (1 = the first)."""
        if self.min_resource is not None:
            return self.min_resource
        if self.n_warmup_steps is not None:
            return self.n_warmup_steps + 1
        epochs = DEFAULT_FIRST_RUNG if self.first_rung is None else self.first_rung
        # A hair below the product, so that 0.5 epoch at 2 evaluations per epoch is evaluation 1.
        return max(1, math.ceil(epochs * self.evals_per_epoch - 1e-9))

    @property
    def trials_before_pruning(self) -> int:
        for said in (self.min_trials, self.n_startup_trials):
            if said is not None:
                return said
        return DEFAULT_MIN_TRIALS


# A peft value is fixed (r: 8) or searched with the syntax of any parameter (r: {int: [4, 32]}).
Searchable = Union[Param, bool, int, float, str, list[str]]  # noqa: UP007


class PeftSpec(_Strict):
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
            "r": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer of at least 1"),
            "alpha": (lambda v: _is_number(v) and v > 0, "a number above 0"),
            "dropout": (lambda v: _is_number(v) and 0 <= v < 1, "a probability in [0, 1)"),
            "bias": (lambda v: v in ("none", "all", "lora_only"), "one of none, all, lora_only"),
            "target_modules": (lambda v: v is None or (isinstance(v, str) and v != "")
                               or (isinstance(v, list) and v and all(isinstance(m, str) for m in v)),
                               'module names ([query, value]) or "all-linear"'),
        }
        for name, (valid, expected) in rules.items():
            value = getattr(self, name)
            for candidate in (_ends(value) if _is_param(value) else [value]):
                if not valid(candidate):
                    raise ValueError(f"peft.{name}: {candidate!r} is not {expected}")
        return self

    def searched(self) -> dict[str, Any]:
        """The searched values as search-space parameters, named peft.<key>."""
        return {f"{PEFT_PREFIX}{name}": getattr(self, name) for name in type(self).model_fields
                if _is_param(getattr(self, name))}

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """The LoRA settings of a trial: the fixed values, and `params`' peft.<key> for the searched."""
        values = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            values[name] = params[f"{PEFT_PREFIX}{name}"] if _is_param(value) else value
        if isinstance(values["target_modules"], str) and values["target_modules"] != "all-linear":
            # A choice among module sets is written "query,value".
            values["target_modules"] = [m.strip() for m in values["target_modules"].split(",")]
        return values


def _is_param(value: Any) -> bool:
    return isinstance(value, (FloatParam, IntParam, ChoiceParam))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ends(param: Any) -> list[Any]:
    return list(param.choices) if isinstance(param, ChoiceParam) else list(param.bounds)


class EarlyStoppingSpec(_Strict):
    """Stop a trial whose objective has not improved for `patience` evaluations. It ends COMPLETE:
    the trial stopped itself, the pruner did not stop it."""

    patience: int = Field(ge=1)
    """Evaluations without an improvement before the trial stops."""
    min_delta: float = Field(default=0.0, ge=0)
    """An improvement smaller than this does not count."""


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
    task: Literal[tuple(TASKS)] = DEFAULT_TASK
    """The kind of fine-tuning; it decides the dataset keys, the metrics and the model class."""
    model: str = Field(min_length=1)
    """A hub model id, a local directory, or package:PKG[/path] (a model shipped in a package)."""
    dataset: DatasetSpec
    objective: ObjectiveSpec | None = None
    """Default: the task's default metric (accuracy, f1, rougeL, loss)."""
    search_space: dict[str, Param] = Field(min_length=1)
    training: dict[str, Any] = Field(default_factory=dict)
    """Fixed TrainingArguments fields and model knobs, the same in every trial."""
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    budget: BudgetSpec
    heartbeat: HeartbeatSpec = HeartbeatSpec()
    peft: PeftSpec | None = None
    """LoRA adapters instead of full fine-tuning (PyPI peft)."""
    early_stopping: EarlyStoppingSpec | None = None
    seed: int = 0
    """Trial k trains with seed + k, so every trial is reproducible from its record."""

    @model_validator(mode="before")
    @classmethod
    def _dataset_follows_the_task(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("dataset"), dict):
            if TASK_KEY in data["dataset"]:
                raise ValueError(f"dataset.{TASK_KEY}: the task goes at the top of the spec (task: ...), not under dataset:")
            task = data.get("task", DEFAULT_TASK)
            data = {**data, "dataset": {**data["dataset"], TASK_KEY: task}}
        return data

    @model_validator(mode="after")
    def _no_param_twice(self) -> StudySpec:
        both = sorted(set(self.search_space) & set(self.training))
        if both:
            raise ValueError(
                f"{', '.join(both)} is both searched and fixed; keep it in one of "
                "search_space: or training:"
            )
        return self

    @model_validator(mode="after")
    def _objective_of_the_task(self) -> StudySpec:
        task = TASKS[self.task]
        if self.objective is None:
            object.__setattr__(self, "objective", ObjectiveSpec(metric=task.default_metric))
        metric = self.objective.metric
        if metric not in task.metrics:
            elsewhere = [name for name, t in TASKS.items() if metric in t.metrics]
            hint = f" ({metric} is a metric of task: {' and '.join(elsewhere)})" if elsewhere else ""
            raise ValueError(
                f"objective.metric: unknown metric {metric!r}; the evaluation returns "
                f"{', '.join(task.metrics)}{hint}"
            )
        natural = task.metrics[metric]
        if self.objective.direction is None:
            object.__setattr__(self.objective, "direction", natural)
        elif self.objective.direction != natural:
            raise ValueError(
                f"objective: direction {self.objective.direction} for {metric} would search for the "
                f"worst model; use direction: {natural}"
            )
        return self

    @model_validator(mode="after")
    def _generation_only_where_it_runs(self) -> StudySpec:
        if TASKS[self.task].generates:
            return self
        for section, names in (("search_space", self.search_space), ("training", self.training)):
            declared = [n for n in names if n in GENERATION_SETTINGS]
            if declared:
                generating = " and ".join(name for name, t in TASKS.items() if t.generates)
                raise ValueError(
                    f"{section}.{declared[0]}: a generation setting, but the {self.task} task does not "
                    f"generate when it evaluates ({generating} does); remove it"
                )
        return self

    @model_validator(mode="after")
    def _peft_trains_no_full_layers(self) -> StudySpec:
        if self.peft is None:
            return self
        for section, names in (("search_space", self.search_space), ("training", self.training)):
            for knob in ("freeze_embeddings", "freeze_layers", "gradual_unfreezing"):
                if knob in names:
                    raise ValueError(
                        f"{section}.{knob}: with peft: every pretrained weight is frozen already and only "
                        "the adapters and the head train; remove it (or the peft: section)"
                    )
        return self

    @property
    def searched_params(self) -> dict[str, Any]:
        """Every searched parameter: the search space's and the peft section's (peft.r, ...)."""
        return {**self.search_space, **(self.peft.searched() if self.peft else {})}

    @property
    def task_spec(self) -> Task:
        """The task's implementation (hpsearch.tasks)."""
        return TASKS[self.task]

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
    # search_space.<name>.<union tag>.<field> and dataset.<task>.<field>: the tag repeats what the
    # user wrote (the parameter's kind, the spec's task); drop it.
    if parts[:1] == ["search_space"] and len(parts) > 2 and parts[2] in ("float", "int", "choice"):
        del parts[2]
    task = None
    if parts[:1] == ["dataset"] and len(parts) > 1 and parts[1] in TASKS:
        task = parts.pop(1)
    loc = ".".join(parts)
    if first["type"] == "extra_forbidden":
        message = _unknown_key(str(first["loc"][-1]), task)
    elif first["type"] == "missing":
        message = "missing; this key is required"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] not in ("value_error", "param_kind", "dataset_kind") and "input" in first:
            message += f", got {first['input']!r}"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    if loc and message.startswith(f"{loc}."):  # the message names the key itself (peft.r: ...)
        return f"{message}{suffix}"
    return f"{loc}: {message}{suffix}" if loc else f"{message}{suffix}"


def _unknown_key(key: str, task: str | None) -> str:
    if task is not None:
        # A key of another task's dataset: say which task takes it.
        takers = [name for name, t in TASKS.items() if name != task and key in t.Dataset.model_fields]
        if takers and key not in TASKS[task].Dataset.model_fields:
            return (f"the {task} task takes no {key} ({' and '.join(takers)} "
                    f"{'does' if len(takers) == 1 else 'do'}); remove it, or set task: {takers[0]}")
    close = difflib.get_close_matches(key, _known_keys(task), n=1)
    hint = f" (did you mean {close[0]}?)" if close else "; see README.md for the keys a spec takes"
    return f"unknown key{hint}"


def _known_keys(task: str | None = None) -> list[str]:
    models = [StudySpec, ObjectiveSpec, SamplerSpec, PrunerSpec, BudgetSpec, HeartbeatSpec,
              PeftSpec, EarlyStoppingSpec, FloatParam, IntParam, ChoiceParam]
    models += [TASKS[task].Dataset] if task else [t.Dataset for t in TASKS.values()]
    return [field.alias or name for m in models for name, field in m.model_fields.items() if name != TASK_KEY or m is StudySpec]
