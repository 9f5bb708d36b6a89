"""The study spec's schema: what `studies/<name>.yaml` may declare, every key and value checked.

Only the shape and the values are checked here (no file system, no transformers import); `check.py`
adds the checks that need the model and data files, and `hpsearch.trial.arguments` the
`TrainingArguments` fields.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, Union

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from hpsearch.errors import SpecError
from hpsearch.spec.algorithms import PrunerSpec, SamplerSpec
from hpsearch.spec.augment import AugmentSpec, BackTranslationSpec, check_augment_task
from hpsearch.spec.auto_sampler import choose_sampler
from hpsearch.spec.choice import ModelChoice, for_trial, parse_model, searched_choices
from hpsearch.spec.condition import check_conditions, check_sampler_fits
from hpsearch.spec.distill import DistillSpec, check_distilled_task
from hpsearch.spec.objectives import ObjectiveSpec, check_objective, check_objectives
from hpsearch.spec.param import ChoiceParam, FloatParam, IntParam, SearchEntry, StrictModel
from hpsearch.spec.run_settings import BudgetSpec, CheckpointSpec, HeartbeatSpec, ResourcesSpec
from hpsearch.spec.techniques import EarlyStoppingSpec, PeftSpec, check_peft_fits
from hpsearch.spec.warm_start import WarmStartSpec
from hpsearch.tasks import DEFAULT_TASK, TASK_KEY, TASKS, Task

# Knobs applied to the model rather than to TrainingArguments (see hpsearch/trial/model.py and
# hpsearch/trial/layers.py): its dropout, the layers it trains, and their learning rates.
MODEL_KNOBS = (
    "dropout",
    "freeze_embeddings",
    "freeze_layers",
    "layer_lr_decay",
    "gradual_unfreezing",
)
# Settings of the model's generation config, used when evaluation generates (seq2seq); searchable
# like training arguments, which `Trainer.hyperparameter_search` cannot do (transformers#33755).
GENERATION_SETTINGS = ("num_beams", "max_new_tokens", "length_penalty", "no_repeat_ngram_size")


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


class StudySpec(StrictModel):
    task: Literal[tuple(TASKS)] = DEFAULT_TASK
    """The kind of fine-tuning; it decides the dataset keys, the metrics and the model class."""
    model: str | ModelChoice
    """A hub model id, a local directory, or package:PKG[/path] (a model shipped in a package);
    `{choice: [...]}` searches it (hpsearch.spec.choice)."""
    dataset: DatasetSpec
    objective: ObjectiveSpec | None = None
    """Default: the task's default metric (accuracy, f1, rougeL, loss). With `objectives:` it is
    the first of them: the one trials are pruned on and `value: best` reads."""
    objectives: list[ObjectiveSpec] | None = None
    """Several objectives (a Pareto front): the first a metric of the evaluation, the others that
    or a cost hpsearch measures (spec/objectives.py)."""
    search_space: dict[str, SearchEntry] = Field(min_length=1)
    training: dict[str, Any] = Field(default_factory=dict)
    """Fixed TrainingArguments fields and model knobs, the same in every trial."""
    sampler: SamplerSpec = SamplerSpec()
    pruner: PrunerSpec = PrunerSpec()
    budget: BudgetSpec
    heartbeat: HeartbeatSpec = HeartbeatSpec()
    checkpoint: CheckpointSpec | None = CheckpointSpec()
    """A running trial's checkpoint (`{every: N}` evaluations), or none (`false`)."""
    resources: ResourcesSpec = ResourcesSpec()
    peft: PeftSpec | None = None
    """Parameter-efficient fine-tuning instead of full: LoRA, DoRA, IA3, prompt or prefix tuning
    (PyPI peft; docs/adapters.md)."""
    early_stopping: EarlyStoppingSpec | None = None
    distill: DistillSpec | None = None
    """Knowledge distillation from a teacher model (hpsearch.spec.distill)."""
    augment: AugmentSpec | None = None
    """New training rows made from the training rows, each setting searchable (spec/augment.py)."""
    seed: int = 0
    """Trial k trains with seed + k, so every trial is reproducible from its record."""
    warm_start: WarmStartSpec | None = None
    """Earlier studies whose best configurations are tried first (hpsearch.study.warm_start)."""

    @field_validator("objectives", mode="before")
    @classmethod
    def _several_objectives(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) < 2:
            raise ValueError(
                f"a list of two or more objectives, got {len(value)}; for one, write objective: "
                "{metric: ...} instead"
            )
        return value

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _checkpoint_switch(cls, value: Any) -> Any:
        """`checkpoint: false` is no checkpoint, `checkpoint: true` the default one."""
        if value is False:
            return None
        if value is True:
            return {}
        if value is not None and not isinstance(value, (dict, CheckpointSpec)):
            raise ValueError(f"expected {{every: N}} (evaluations) or false, got {value!r}")
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _model_or_choice(cls, value: Any) -> Any:
        return parse_model(value)

    @model_validator(mode="before")
    @classmethod
    def _dataset_follows_the_task(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("dataset"), dict):
            if TASK_KEY in data["dataset"]:
                raise ValueError(
                    f"dataset.{TASK_KEY}: the task goes at the top of the spec (task: ...), not "
                    "under dataset:"
                )
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
        for name in searched_choices(self):
            if name in self.search_space or name in self.training:
                where = "search_space" if name in self.search_space else "training"
                raise ValueError(
                    f"{where}.{name}: {name} is searched by its own key "
                    f"({'model' if name == 'model' else 'dataset.max_length'}: {{choice: [...]}}); "
                    "remove it here"
                )
        return self

    @model_validator(mode="after")
    def _conditions_hold_together(self) -> StudySpec:
        check_conditions(self.searched_params, self.fixed_values)
        object.__setattr__(self, "sampler", choose_sampler(self.sampler, self.searched_params))
        check_sampler_fits(self.sampler.name, self.searched_params)
        return self

    @model_validator(mode="after")
    def _objective_of_the_task(self) -> StudySpec:
        task = TASKS[self.task]
        if self.objectives is not None:
            check_objectives(self.objective, self.objectives, task)
            if self.sampler.name == "cmaes":
                raise ValueError(
                    "sampler.name: cmaes cannot search several objectives (Optuna's CmaEsSampler "
                    "refuses them); use tpe, gp, random or qmc"
                )
            object.__setattr__(self, "objective", self.objectives[0])
            return self
        if self.objective is None:
            object.__setattr__(self, "objective", ObjectiveSpec(metric=task.default_metric))
        check_objective(self.objective, task, "objective")
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
                    f"{section}.{declared[0]}: a generation setting, but the {self.task} task does "
                    f"not generate when it evaluates ({generating} does); remove it"
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
                        f"{section}.{knob}: with peft: every pretrained weight is frozen already "
                        "and only the adapters and the head train; remove it (or the peft: "
                        "section)"
                    )
        check_peft_fits(
            self.peft, self.task, {"search_space": self.search_space, "training": self.training}
        )
        return self

    @model_validator(mode="after")
    def _distilled_task(self) -> StudySpec:
        if self.distill is not None:
            check_distilled_task(self.task)
        return self

    @model_validator(mode="after")
    def _augment_fits_the_task(self) -> StudySpec:
        check_augment_task(self.augment, self.task)
        if self.augment is not None and self.distill is not None:
            # The teacher's logits are cached for the training set as tokenized; a trial's
            # augmented rows (made per seed) would need their own, which nothing computes yet.
            raise ValueError(
                "augment: cannot be combined with distill: yet (the teacher's logits cover the "
                "unaugmented rows only); remove one of the two sections"
            )
        return self

    @property
    def searched_params(self) -> dict[str, Any]:
        """Every searched parameter: the model and max_length when searched, the search space's
        and the peft section's (peft.r, ...)."""
        return {
            **searched_choices(self),
            **self.search_space,
            **(self.peft.searched() if self.peft else {}),
            **(self.distill.searched() if self.distill else {}),
            **(self.augment.searched() if self.augment else {}),
        }

    def for_trial(self, params: dict[str, Any]) -> StudySpec:
        """This spec with the model and max_length a trial's `params` chose (spec/choice.py)."""
        return for_trial(self, params)

    @property
    def fixed_values(self) -> dict[str, Any]:
        """The values every trial shares that a condition may name: the model (while it is one),
        training: and the fixed peft values (peft.method, ...)."""
        model = {"model": self.model} if isinstance(self.model, str) else {}
        return {
            **model,
            **self.training,
            **(self.peft.fixed() if self.peft else {}),
            **(self.distill.fixed() if self.distill else {}),
            **(self.augment.fixed() if self.augment else {}),
        }

    @property
    def all_objectives(self) -> list[ObjectiveSpec]:
        """Every objective, the pruned-on one first: `objectives:`, or `[objective]`."""
        return list(self.objectives) if self.objectives is not None else [self.objective]

    @property
    def is_multi_objective(self) -> bool:
        return self.objectives is not None

    @property
    def task_spec(self) -> Task:
        """The task's implementation (hpsearch.tasks)."""
        return TASKS[self.task]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form stored with the study; `StudySpec.model_validate` reads it back."""
        # With objectives:, `objective` is only its first entry, filled in by the validator.
        exclude = {"objective"} if self.objectives is not None else None
        return self.model_dump(mode="json", by_alias=True, exclude=exclude)


def parse_spec(data: Any, origin: str) -> StudySpec:
    """Validate a spec mapping; `origin` names where it came from in error messages."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{origin}: expected a mapping of keys (model:, dataset:, ...), got "
            f"{type(data).__name__}"
        )
    try:
        return StudySpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(f"{origin}: {_describe(e)}") from None


def _describe(error: ValidationError) -> str:
    """One line for the first problem, naming the key and how to fix it."""
    first = error.errors()[0]
    parts = [str(part) for part in first["loc"]]
    # search_space.<name>.<union tag>.<field> and dataset.<task>.<field>: the tag repeats what the
    # user wrote (a parameter or a list of alternatives, the parameter's kind, the spec's task);
    # drop it. An alternative keeps its index: search_space.<name>.<index>.<field>.
    if parts[:1] == ["search_space"] and len(parts) > 2 and parts[2] in ("param", "alternatives"):
        kind_at = 2 if parts.pop(2) == "param" else 3
        if len(parts) > kind_at and parts[kind_at] in ("float", "int", "choice"):
            del parts[kind_at]
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
        takers = [
            name for name, t in TASKS.items() if name != task and key in t.Dataset.model_fields
        ]
        if takers and key not in TASKS[task].Dataset.model_fields:
            return (
                f"the {task} task takes no {key} ({' and '.join(takers)} "
                f"{'does' if len(takers) == 1 else 'do'}); remove it, or set task: {takers[0]}"
            )
    close = difflib.get_close_matches(key, _known_keys(task), n=1)
    hint = (
        f" (did you mean {close[0]}?)" if close else "; see docs/spec.md for the keys a spec takes"
    )
    return f"unknown key{hint}"


def _known_keys(task: str | None = None) -> list[str]:
    models = [
        StudySpec,
        ObjectiveSpec,
        SamplerSpec,
        PrunerSpec,
        BudgetSpec,
        HeartbeatSpec,
        CheckpointSpec,
        PeftSpec,
        EarlyStoppingSpec,
        DistillSpec,
        WarmStartSpec,
        AugmentSpec,
        BackTranslationSpec,
        FloatParam,
        IntParam,
        ChoiceParam,
    ]
    models += [TASKS[task].Dataset] if task else [t.Dataset for t in TASKS.values()]
    return [
        field.alias or name
        for m in models
        for name, field in m.model_fields.items()
        if name != TASK_KEY or m is StudySpec
    ]
