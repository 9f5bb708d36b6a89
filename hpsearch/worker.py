"""A worker: builds what every trial shares once, then runs trials until the study's budget is spent."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna

from hpsearch.budget import FAIL_REASON_ATTR, n_spent
from hpsearch.errors import HpsearchError
from hpsearch.spec import StudySpec

CACHE_ENV = "HPSEARCH_CACHE"
# The same failure this many times in a row is no search result but a problem to fix first.
MAX_REPEATED_FAILURES = 3


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, "storage/cache"))


def quiet_libraries() -> None:
    """hpsearch shows one line per trial; the libraries' own logs and bars would bury it."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


def build_runner(spec: StudySpec, artifact_dir: Path):
    """Tokenizer, tokenized data (from the disk cache), pretrained weights: once per process."""
    from hpsearch.artifact import open_artifact_store
    from hpsearch.data import prepare_data
    from hpsearch.location import resolve_model
    from hpsearch.modeling import ModelFactory, load_tokenizer
    from hpsearch.objective import TrialRunner, describe_device

    quiet_libraries()
    location = resolve_model(spec.model)
    tokenizer = load_tokenizer(location)
    data = prepare_data(spec.dataset, spec.model, tokenizer, cache_dir())
    return TrialRunner(
        spec=spec, data=data, factory=ModelFactory(location, data.label_names), tokenizer=tokenizer,
        artifact_store=open_artifact_store(artifact_dir), device=describe_device(),
    )


def run_trials(
    study: optuna.Study,
    runner,
    n_trials: int,
    timeout: float | None,
    on_trial_end: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """Run trials until `n_trials` count toward the budget study-wide (or `timeout` passes)."""
    from hpsearch.objective import TrialFailed

    recent_failures: list[str | None] = []

    def stop_when_spent(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial_end is not None:
            on_trial_end(study, trial)
        recent_failures.append(trial.user_attrs.get(FAIL_REASON_ATTR) if trial.state.name == "FAIL" else None)
        last = recent_failures[-MAX_REPEATED_FAILURES:]
        if len(last) == MAX_REPEATED_FAILURES and last[0] is not None and len(set(last)) == 1:
            raise HpsearchError(
                f"{MAX_REPEATED_FAILURES} trials in a row failed with: {last[0]}; fix the cause and "
                "run again (the failed trials are recorded in the storage)"
            )
        # Other workers may have finished trials too: recount from the storage.
        if n_spent(study.get_trials(deepcopy=False)) >= n_trials:
            study.stop()

    remaining = n_trials - n_spent(study.get_trials(deepcopy=False))
    if remaining <= 0:
        return
    study.optimize(
        runner, n_trials=remaining, timeout=timeout, catch=(TrialFailed,), callbacks=[stop_when_spent]
    )
