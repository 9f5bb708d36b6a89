"""What a worker process does once, before its first trial: quiet the libraries, take its share of
the CPU cores, load the tokenizer, the tokenized data (cached on disk) and the pretrained weights."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import optuna
from sqlalchemy.engine import URL

from hpsearch.spec import StudySpec

CACHE_ENV = "HPSEARCH_CACHE"
THREADS_ENV = "HPSEARCH_THREADS"  # set by the supervisor: this worker's share of the CPU cores


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, "storage/cache"))


def quiet_libraries() -> None:
    """hpsearch shows one line per trial; the libraries' own logs and bars would bury it."""
    import datasets
    import huggingface_hub
    import transformers

    transformers.logging.set_verbosity_error()
    huggingface_hub.utils.logging.set_verbosity_error()  # "... thrown while requesting HEAD" offline
    transformers.utils.logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


def build_runner(spec: StudySpec, url: URL, study_name: str):
    """Tokenizer, tokenized data (from the disk cache), pretrained weights: once per process."""
    from hpsearch.spec import resolve_model
    from hpsearch.storage import BestModelKeeper, StudyLock, artifact_dir, open_artifact_store
    from hpsearch.trial import ModelFactory, TrialRunner, describe_device

    quiet_libraries()
    if os.environ.get(THREADS_ENV):
        import torch

        torch.set_num_threads(int(os.environ[THREADS_ENV]))
    location = resolve_model(spec.model)
    tokenizer, data = load_data(spec, location)
    store = open_artifact_store(artifact_dir(url))
    factory = ModelFactory(location, spec.task_spec, data.label_names, tokenizer)
    if spec.peft is not None:
        from hpsearch.trial.lora import check_adapters

        check_adapters(factory, spec)
    return TrialRunner(
        spec=spec, data=data, factory=factory, tokenizer=tokenizer,
        artifact_store=store, best_model=BestModelKeeper(store, StudyLock(url, study_name, "best-model")),
        device=describe_device(spec.training),
    )


def load_data(spec: StudySpec, location):
    """The tokenizer, fitted to the task, and the data as model inputs (from the disk cache);
    refuses an objective the data cannot give (entity F1 of tags that mark no entity)."""
    from hpsearch.trial import load_tokenizer, prepare_data

    task = spec.task_spec
    tokenizer = load_tokenizer(location)
    task.prepare_tokenizer(tokenizer)
    data = prepare_data(spec.dataset, spec.model, tokenizer, cache_dir())
    task.check_metric(spec.objective.metric, data.label_names)
    return tokenizer, data


def warm_cache(spec: StudySpec) -> None:
    """Tokenize the data once before workers start, rather than in every worker at once."""
    from hpsearch.spec import resolve_model

    quiet_libraries()
    load_data(spec, resolve_model(spec.model))
