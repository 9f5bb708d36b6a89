"""One trial: its training arguments and precision, the model and the tokenized data it trains on,
the Trainer callback that evaluates, reports and prunes, the runner that ties them together for a
search trial, and the final training of a chosen trial. Imports torch and transformers."""

from hpsearch.trial.arguments import (
    CONTROLLED_ARGS,
    DEFAULT_ARGS,
    build_training_args,
    check_training_args,
)
from hpsearch.trial.callback import OptunaPruningCallback
from hpsearch.trial.classes import transformers_class
from hpsearch.trial.data import PreparedData, cache_key, prepare_data
from hpsearch.trial.device import count_gpus, describe_device
from hpsearch.trial.final_training import FinalResult, ProgressReporter, final_record, train_final
from hpsearch.trial.gpu_memory import (
    PEAK_GPU_MEMORY_ATTR,
    check_fit,
    gpu_total_mb,
    recorded_peaks,
)
from hpsearch.trial.load import (
    CACHE_ENV,
    Loaded,
    cache_dir,
    load_data,
    load_for_training,
    quiet_libraries,
)
from hpsearch.trial.model import ModelFactory, check_model_choices, load_config, load_tokenizer
from hpsearch.trial.precision import auto_precision, precision_name
from hpsearch.trial.resident import ResidentModels
from hpsearch.trial.runner import TrialRunner, record_start

__all__ = [
    "CACHE_ENV",
    "CONTROLLED_ARGS",
    "DEFAULT_ARGS",
    "PEAK_GPU_MEMORY_ATTR",
    "FinalResult",
    "Loaded",
    "ModelFactory",
    "OptunaPruningCallback",
    "PreparedData",
    "ProgressReporter",
    "ResidentModels",
    "TrialRunner",
    "auto_precision",
    "build_training_args",
    "cache_dir",
    "cache_key",
    "check_fit",
    "check_model_choices",
    "check_training_args",
    "count_gpus",
    "describe_device",
    "final_record",
    "gpu_total_mb",
    "load_config",
    "load_data",
    "load_for_training",
    "load_tokenizer",
    "precision_name",
    "prepare_data",
    "quiet_libraries",
    "record_start",
    "recorded_peaks",
    "train_final",
    "transformers_class",
]
