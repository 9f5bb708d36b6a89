"""What a worker process does once, before its first trial: quiet the libraries, take its share of
the CPU cores, load the tokenizer, the tokenized data (cached on disk) and the pretrained weights
(the loading itself is hpsearch.trial.load's, shared with `hpsearch train`)."""

from __future__ import annotations

import itertools
import os

from sqlalchemy.engine import URL

from hpsearch.spec import StudySpec
from hpsearch.spec.choice import searched_choices

THREADS_ENV = "HPSEARCH_THREADS"  # set by the supervisor: this worker's share of the CPU cores


def build_runner(spec: StudySpec, url: URL, study_name: str, group=None):
    """Tokenizer, tokenized data (from the disk cache), model factory: once per process, or once
    per model and max_length drawn where the spec searches them (trial/resident.py).
    `group`: the trial group (hpsearch.trial.distributed) this process is a rank of, if any."""
    from hpsearch.storage import BestModelKeeper, artifact_dir, open_artifact_store
    from hpsearch.trial import (
        Loaded,
        ResidentModels,
        TrialRunner,
        describe_device,
        load_for_training,
        quiet_libraries,
    )

    quiet_libraries()
    if os.environ.get(THREADS_ENV):
        import torch

        torch.set_num_threads(int(os.environ[THREADS_ENV]))
    store = open_artifact_store(artifact_dir(url))

    def load(trial_spec: StudySpec) -> Loaded:
        loaded = load_for_training(trial_spec, url)
        if trial_spec.peft is not None:
            from hpsearch.trial.adapters import check_adapters

            check_adapters(loaded.factory, trial_spec)
        return loaded

    models = ResidentModels(spec.resources.resident_models, load)
    # The first trial's pair now (a fixed spec's only one): a model or data that cannot load
    # stops the worker before it takes a trial.
    models.get(spec.for_trial(first_choices(spec)))
    return TrialRunner(
        spec=spec,
        models=models,
        artifact_store=store,
        best_model=BestModelKeeper(store),
        device=describe_device(spec.training, group.size if group is not None else 1),
        group=group,
    )


def warm_cache(spec: StudySpec, url: URL | None = None) -> None:
    """Tokenize the data (and compute a `distill:` teacher's logits) once before workers start,
    rather than in every worker at once: for each model and max_length a trial may draw."""
    from hpsearch.spec import resolve_model
    from hpsearch.trial import load_data, quiet_libraries

    quiet_libraries()
    for trial_spec in every_choice(spec):
        load_data(trial_spec, resolve_model(trial_spec.model), url)


def first_choices(spec: StudySpec) -> dict:
    """The first model and max_length of a spec that searches them (none of a fixed spec)."""
    return {name: param.choices[0] for name, param in searched_choices(spec).items()}


def every_choice(spec: StudySpec) -> list[StudySpec]:
    """The spec as each (model, max_length) pair it searches fixes it."""
    searched = searched_choices(spec)
    pairs = itertools.product(*(param.choices for param in searched.values()))
    return [spec.for_trial(dict(zip(searched, pair, strict=True))) for pair in pairs]
