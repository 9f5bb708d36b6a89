"""The study file: its schema, where its model and data live, its search space, and the checks run
before anything is written. No torch or transformers here."""

from hpsearch.spec.check import check_sources, check_trial_group
from hpsearch.spec.choice import (
    SPEC_CHOICES,
    ModelChoice,
    describe_model,
    model_choices,
)
from hpsearch.spec.condition import is_conditional
from hpsearch.spec.file import SPEC_SUFFIXES, find_spec_file, load_spec_file
from hpsearch.spec.location import Location, resolve_data, resolve_model
from hpsearch.spec.schema import (
    GENERATION_SETTINGS,
    MODEL_KNOBS,
    BudgetSpec,
    ChoiceParam,
    DatasetSpec,
    FloatParam,
    HeartbeatSpec,
    IntParam,
    ObjectiveSpec,
    PrunerSpec,
    SamplerSpec,
    StudySpec,
    parse_spec,
)
from hpsearch.spec.search_space import (
    Settings,
    corner_values,
    param_ends,
    split_params,
    suggest_params,
)
from hpsearch.spec.techniques import (
    MERGEABLE_METHODS,
    PEFT_METHODS,
    PEFT_PREFIX,
    EarlyStoppingSpec,
    PeftSpec,
)
from hpsearch.spec.warm_start import WarmStartSpec

__all__ = [
    "GENERATION_SETTINGS",
    "MERGEABLE_METHODS",
    "MODEL_KNOBS",
    "PEFT_METHODS",
    "PEFT_PREFIX",
    "SPEC_CHOICES",
    "SPEC_SUFFIXES",
    "BudgetSpec",
    "ChoiceParam",
    "DatasetSpec",
    "EarlyStoppingSpec",
    "FloatParam",
    "HeartbeatSpec",
    "IntParam",
    "Location",
    "ModelChoice",
    "ObjectiveSpec",
    "PeftSpec",
    "PrunerSpec",
    "SamplerSpec",
    "Settings",
    "StudySpec",
    "WarmStartSpec",
    "check_sources",
    "check_trial_group",
    "corner_values",
    "describe_model",
    "find_spec_file",
    "is_conditional",
    "load_spec_file",
    "model_choices",
    "param_ends",
    "parse_spec",
    "resolve_data",
    "resolve_model",
    "split_params",
    "suggest_params",
]
