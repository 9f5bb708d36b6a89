"""The worker loop: trials, one at a time, until the study-wide budget is spent, never overshot."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable

import optuna

from hpsearch.errors import BudgetFull, HpsearchError, TrialFailed
from hpsearch.storage import count_trials
from hpsearch.study import FAIL_REASON_ATTR, LOST, SPENT, START, budget_verdict, enforce_budget

# The same failure this many times in a row is no search result but a problem to fix first.
MAX_REPEATED_FAILURES = 3
POLL_INTERVAL_S = 2.0
# Tests only: seconds a worker waits, holding the study lock, after it counted a free slot; the
# window in which a stalled holder loses its lock to the server's hold limit.
SLOT_DELAY_ENV = "HPSEARCH_TEST_SLOT_DELAY"

log = logging.getLogger("hpsearch.workers")


def run_trials(
    study: optuna.Study,
    runner,
    n_trials: int,
    timeout: float | None,
    lock,
    on_trial_end: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """Run trials until `n_trials` count toward the study's budget, counting every worker's trials.

    A trial starts only while the budget has room for it beside the trials other workers are
    running, so workers together never overshoot: the storage refuses a trial beyond the budget in
    the transaction that creates it (even one whose worker stalled and lost the study lock; it
    counts again), and the study lock lets one worker at a time count and create, so the others
    are not refused in a crowd. When the remaining slots are all held by running trials, this
    worker waits: one of them may yet die and need a re-run. `timeout` stops starting new trials.

    Ctrl-C ends the run with KeyboardInterrupt, its trial FAIL 'interrupted' and re-run once,
    also when the stale-trial sweep ended that trial first (a worker stopped past the grace period).
    A worker that simply wakes up after such a stop lets the trial go (it is no longer its own; its
    re-run is queued) and goes on with the next.

    One `study.optimize` call runs them all, the lock for the next trial taken at the end of the
    previous one in a callback: an `optimize` call per trial cost its set-up and a new database
    session every trial.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    recent_failures: list[str | None] = []
    interrupted = False
    running: int | None = None  # the number of the trial this worker runs

    def objective(trial: optuna.Trial) -> float:
        nonlocal interrupted, running
        lock.release()  # the trial exists now: others may check the budget again
        running = trial.number
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
                f"{MAX_REPEATED_FAILURES} trials in a row failed with: {last[0]}; fix the cause "
                "and run again (the failed trials are recorded in the storage)"
            )
        if not _take_slot(study, n_trials, lock, deadline):
            study.stop()

    enforce_budget(study, n_trials)
    try:
        while _take_slot(study, n_trials, lock, deadline):
            try:
                study.optimize(objective, catch=(TrialFailed,), callbacks=[after_trial])
                return
            except BudgetFull:
                # The slot counted under the lock was gone when the trial was created: the lock was
                # lost meanwhile (ended by the server after its hold limit while this worker
                # stalled) and another worker took the slot. The budget is counted again.
                lock.release()
            except Exception:
                if interrupted or not _lost_meanwhile(study, running):
                    raise
                # Optuna refused to record a trial that the stale-trial sweep had failed as lost
                # (and queued again) while this process was stopped past the grace period: the
                # trial is no longer this worker's, and its re-run waits for any worker.
                log.warning(
                    "trial %s was ended as lost while this worker was stopped (no heartbeat for "
                    "longer than the grace period); its re-run is queued; going on",
                    running,
                )
                lock.release()
    except Exception:
        if not interrupted:
            raise
        # Optuna's tell refused a trial the stale-trial sweep had already failed (and re-run) while
        # this process was stopped: the interrupt is what happened.
        raise KeyboardInterrupt from None
    finally:
        lock.release()


def _lost_meanwhile(study: optuna.Study, number: int | None) -> bool:
    """Whether trial `number`, which this worker was running, was failed as lost by the sweep."""
    if number is None:
        return False
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    return (
        trial is not None
        and trial.state == optuna.trial.TrialState.FAIL
        and trial.user_attrs.get(FAIL_REASON_ATTR) == LOST
    )


def _take_slot(study: optuna.Study, n_trials: int, lock, deadline: float | None) -> bool:
    """Wait until the budget has room for one more trial: True with the lock held, False if it is
    spent or the deadline has passed."""
    while deadline is None or time.monotonic() < deadline:
        lock.acquire()
        # Each trial, whatever its state, holds at most one slot: while there are fewer trials than
        # the budget, there is room, and counting them is one query where reading them is several.
        if count_trials(study) < n_trials:
            return _after_counting()
        verdict = budget_verdict(study.get_trials(deepcopy=False), n_trials)
        if verdict == START:
            return _after_counting()
        lock.release()
        if verdict == SPENT:
            return False
        # FULL: every free slot is taken by a running trial; see whether one of them died.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        time.sleep(POLL_INTERVAL_S)
    return False


def _after_counting() -> bool:
    if os.environ.get(SLOT_DELAY_ENV):
        log.warning(
            "%s: holding a counted slot for %s s", SLOT_DELAY_ENV, os.environ[SLOT_DELAY_ENV]
        )
        time.sleep(float(os.environ[SLOT_DELAY_ENV]))
    return True
