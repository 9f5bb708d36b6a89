"""The command line's side of a search (`run`, `worker`): it hands its console to
hpsearch.workers.run_search, which runs the trials; exits 130 when the search is interrupted; and,
once the study's budget is spent, scores the best model on the held-out test set (a deploy job,
which workers do not call)."""

from __future__ import annotations

import sys

from hpsearch.cli.app import console
from hpsearch.errors import ExitCode


def search(url, rdb, name: str, spec, spent: int, *args, **kwargs) -> None:
    """hpsearch.workers.run_search on this console (its arguments after `console`)."""
    from hpsearch.workers import run_search

    try:
        finished = run_search(console, url, rdb, name, spec, spent, *args, **kwargs)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    if finished is not None:
        _score_best(url, rdb, name, finished)


def score_on_test(url, rdb, name: str, numbers: list[int]) -> dict:
    """Score the kept models of trials `numbers` on the study's held-out test set, if its spec
    holds one and no process has scored them (hpsearch.deploy.score_kept_models); what was scored.
    """
    from hpsearch.study import stored_spec

    if not stored_spec(rdb, name).dataset.has_test_set:
        return {}
    from hpsearch.deploy import score_kept_models
    from hpsearch.storage import artifact_dir, open_artifact_store
    from hpsearch.trial import cache_dir, quiet_libraries

    quiet_libraries()
    store = open_artifact_store(artifact_dir(url), create=False)
    with console.status("scoring the best model on the held-out test set"):
        return score_kept_models(rdb, name, store, numbers, cache_dir())


def _score_best(url, rdb, name: str, study) -> None:
    """The budget is spent: the best trial's kept model (each Pareto front member's) scored on the
    test set, once (a run beside this one, or an earlier run, may have scored it)."""
    from optuna.trial import TrialState

    from hpsearch.views import describe_test_scores

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        numbers = []
    elif len(study.directions) > 1:  # several objectives: each member of the Pareto front
        numbers = [trial.number for trial in study.best_trials]
    else:
        numbers = [study.best_trial.number]
    for number, scores in score_on_test(url, rdb, name, numbers).items():
        console.print(describe_test_scores(number, scores), markup=False)
