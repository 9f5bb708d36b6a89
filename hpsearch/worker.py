"""A worker: builds what every trial shares once, then runs trials until the study's budget is spent."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna

from hpsearch.budget import FAIL_REASON_ATTR, SPENT, START, budget_verdict
from hpsearch.errors import HpsearchError
from hpsearch.spec import StudySpec

CACHE_ENV = "HPSEARCH_CACHE"
THREADS_ENV = "HPSEARCH_THREADS"  # set by the supervisor: this worker's share of the CPU cores
# The same failure this many times in a row is no search result but a problem to fix first.
MAX_REPEATED_FAILURES = 3
POLL_INTERVAL_S = 2.0


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
    if os.environ.get(THREADS_ENV):
        import torch

        torch.set_num_threads(int(os.environ[THREADS_ENV]))
    location = resolve_model(spec.model)
    tokenizer = load_tokenizer(location)
    data = prepare_data(spec.dataset, spec.model, tokenizer, cache_dir())
    return TrialRunner(
        spec=spec, data=data, factory=ModelFactory(location, data.label_names), tokenizer=tokenizer,
        artifact_store=open_artifact_store(artifact_dir), device=describe_device(spec.training),
    )


def warm_cache(spec: StudySpec) -> None:
    """Tokenize the data once before workers start, rather than in every worker at once."""
    from hpsearch.data import prepare_data
    from hpsearch.location import resolve_model
    from hpsearch.modeling import load_tokenizer

    quiet_libraries()
    prepare_data(spec.dataset, spec.model, load_tokenizer(resolve_model(spec.model)), cache_dir())


def run_trials(
    study: optuna.Study,
    runner,
    n_trials: int,
    timeout: float | None,
    lock,
    on_trial_end: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """Run trials until `n_trials` count toward the study's budget, counting every worker's trials.

    A trial starts only under the study lock, and only while the budget has room for it beside the
    trials other workers are running, so workers together never overshoot. When the remaining
    slots are all held by running trials, this worker waits: one of them may yet die and need a
    re-run. `timeout` stops starting new trials.

    One `study.optimize` call runs them all, the lock for the next trial taken at the end of the
    previous one in a callback: an `optimize` call per trial cost its set-up and a new database
    session every trial.
    """
    from hpsearch.objective import TrialFailed

    deadline = None if timeout is None else time.monotonic() + timeout
    recent_failures: list[str | None] = []

    def objective(trial: optuna.Trial) -> float:
        lock.release()  # the trial exists now: others may check the budget again
        return runner(trial)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial_end is not None:
            on_trial_end(study, trial)
        recent_failures.append(trial.user_attrs.get(FAIL_REASON_ATTR) if trial.state.name == "FAIL" else None)
        last = recent_failures[-MAX_REPEATED_FAILURES:]
        if len(last) == MAX_REPEATED_FAILURES and last[0] is not None and len(set(last)) == 1:
            raise HpsearchError(
                f"{MAX_REPEATED_FAILURES} trials in a row failed with: {last[0]}; fix the cause and "
                "run again (the failed trials are recorded in the storage)"
            )
        if not _take_slot(study, n_trials, lock, deadline):
            study.stop()

    try:
        if _take_slot(study, n_trials, lock, deadline):
            study.optimize(objective, catch=(TrialFailed,), callbacks=[after_trial])
    finally:
        lock.release()


def _take_slot(study: optuna.Study, n_trials: int, lock, deadline: float | None) -> bool:
    """Wait until the budget has room for one more trial: True with the lock held, False if it is
    spent or the deadline has passed."""
    from hpsearch.storage import count_trials

    while deadline is None or time.monotonic() < deadline:
        lock.acquire()
        # Each trial, whatever its state, holds at most one slot: while there are fewer trials than
        # the budget, there is room, and counting them is one query where reading them is several.
        if count_trials(study) < n_trials:
            return True
        verdict = budget_verdict(study.get_trials(deepcopy=False), n_trials)
        if verdict == START:
            return True
        lock.release()
        if verdict == SPENT:
            return False
        # FULL: every free slot is taken by a running trial; see whether one of them died.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        time.sleep(POLL_INTERVAL_S)
    return False
