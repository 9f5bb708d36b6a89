"""The worker loop: trials, one at a time, until the study-wide budget is spent, never overshooting it."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import optuna

from hpsearch.errors import HpsearchError, TrialFailed
from hpsearch.storage import count_trials
from hpsearch.study import FAIL_REASON_ATTR, SPENT, START, budget_verdict

# The same failure this many times in a row is no search result but a problem to fix first.
MAX_REPEATED_FAILURES = 3
POLL_INTERVAL_S = 2.0


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

    Ctrl-C ends the run with KeyboardInterrupt, its trial FAIL 'interrupted' and re-run once,
    also when the stale-trial sweep ended that trial first (a worker stopped past the grace period).

    One `study.optimize` call runs them all, the lock for the next trial taken at the end of the
    previous one in a callback: an `optimize` call per trial cost its set-up and a new database
    session every trial.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    recent_failures: list[str | None] = []
    interrupted = False

    def objective(trial: optuna.Trial) -> float:
        nonlocal interrupted
        lock.release()  # the trial exists now: others may check the budget again
        try:
            return runner(trial)
        except KeyboardInterrupt:
            interrupted = True
            raise

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial_end is not None:
            on_trial_end(study, trial)
        recent_failures.append(
            trial.user_attrs.get(FAIL_REASON_ATTR) if trial.state.name == "FAIL" else None
        )
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
    except Exception:
        if not interrupted:
            raise
        # Optuna's tell refused a trial the stale-trial sweep had already failed (and re-run) while
        # this process was stopped: the interrupt is what happened.
        raise KeyboardInterrupt from None
    finally:
        lock.release()


def _take_slot(study: optuna.Study, n_trials: int, lock, deadline: float | None) -> bool:
    """Wait until the budget has room for one more trial: True with the lock held, False if it is
    spent or the deadline has passed."""
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
