"""What a worker process does once, before its first trial: quiet the libraries, take its share of
the CPU cores, load the tokenizer, the tokenized data (cached on disk) and the pretrained weights
(the loading itself is hpsearch.trial.load's, shared with `hpsearch train`)."""

from __future__ import annotations

import os

from sqlalchemy.engine import URL

from hpsearch.spec import StudySpec

THREADS_ENV = "HPSEARCH_THREADS"  # set by the supervisor: this worker's share of the CPU cores


def build_runner(spec: StudySpec, url: URL, study_name: str, group=None):
    """Tokenizer, tokenized data (from the disk cache), pretrained weights: once per process.
    `group`: the trial group (hpsearch.trial.distributed) this process is a rank of, if any."""
    from hpsearch.spec import resolve_model
    from hpsearch.storage import BestModelKeeper, artifact_dir, open_artifact_store
    from hpsearch.trial import (
        ModelFactory,
        TrialRunner,
        describe_device,
        load_data,
        quiet_libraries,
    )

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
        spec=spec,
        data=data,
        factory=factory,
        tokenizer=tokenizer,
        artifact_store=store,
        best_model=BestModelKeeper(store),
        device=describe_device(spec.training, group.size if group is not None else 1),
        group=group,
    )


def warm_cache(spec: StudySpec) -> None:
    """Tokenize the data once before workers start, rather than in every worker at once."""
    from hpsearch.spec import resolve_model
    from hpsearch.trial import load_data, quiet_libraries

    quiet_libraries()
    load_data(spec, resolve_model(spec.model))
