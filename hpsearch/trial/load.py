"""What a process that trains loads once: the libraries quieted, the tokenizer fitted to the task,
the tokenized data (cached on disk) and the pretrained weights. Shared by a worker (its trials) and
by `hpsearch train` (one final training)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from hpsearch.spec import StudySpec
from hpsearch.trial.data import PreparedData, prepare_data
from hpsearch.trial.model import ModelFactory, load_tokenizer

CACHE_ENV = "HPSEARCH_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, "storage/cache"))


def quiet_libraries() -> None:
    """hpsearch shows one line per trial; the libraries' own logs and bars would bury it.
    No warning filter is installed here: the warnings hpsearch means to silence are silenced at
    their call (warnings.catch_warnings), and every other one still reaches the worker's log."""
    import datasets
    import huggingface_hub
    import transformers

    transformers.logging.set_verbosity_error()
    # Offline, huggingface_hub logs "... thrown while requesting HEAD".
    huggingface_hub.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def load_data(spec: StudySpec, location, url=None):
    """The tokenizer, fitted to the task, and the data as model inputs (from the disk cache);
    refuses an objective the data cannot give (entity F1 of tags that mark no entity). With
    `distill:`, the training set carries the teacher's logits (cached too); `url` is the storage
    a best-of: or trial: teacher is kept in (default: HPSEARCH_STORAGE's)."""
    task = spec.task_spec
    tokenizer = load_tokenizer(location)
    task.prepare_tokenizer(tokenizer)
    data = prepare_data(spec.dataset, spec.model, tokenizer, cache_dir())
    task.check_metric(spec.objective.metric, data.label_names)
    if spec.distill is not None:
        from hpsearch.trial.teacher import with_teacher_logits

        data = with_teacher_logits(spec, tokenizer, data, cache_dir(), url)
    return tokenizer, data


@dataclass(frozen=True)
class Loaded:
    """Everything `start_fit` needs besides the values and the seed."""

    tokenizer: Any
    data: PreparedData
    factory: ModelFactory


def load_for_training(spec: StudySpec, url=None) -> Loaded:
    """The tokenizer, the tokenized data and the pretrained weights of `spec`'s model."""
    from hpsearch.spec import resolve_model

    location = resolve_model(spec.model)
    tokenizer, data = load_data(spec, location, url)
    return Loaded(
        tokenizer=tokenizer,
        data=data,
        factory=ModelFactory(location, spec.task_spec, data.label_names, tokenizer),
    )
