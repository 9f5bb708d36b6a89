"""The study-wide trial budget: which trials count toward it and how many remain.

A trial counts once it has finished on its own: COMPLETE, PRUNED, or FAIL with a recorded reason
(NaN, out of memory, bad parameters). A trial interrupted by Ctrl-C or lost with its worker does not
count: it is re-run. Nor does a trial stopped by a bug of hpsearch (it has a `traceback`): the
configuration was never tried.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from optuna.trial import FrozenTrial, TrialState

FAIL_REASON_ATTR = "fail_reason"
INTERRUPTED = "interrupted"
TRACEBACK_ATTR = "traceback"  # the traceback of the bug of hpsearch that stopped a trial


def counts_toward_budget(trial: FrozenTrial) -> bool:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    return (
        trial.state == TrialState.FAIL
        and reason is not None
        and reason != INTERRUPTED
        and TRACEBACK_ATTR not in trial.user_attrs
    )


def n_spent(trials: Iterable[FrozenTrial]) -> int:
    return sum(counts_toward_budget(t) for t in trials)


def count_states(trials: Iterable[FrozenTrial]) -> Counter:
    return Counter(t.state.name for t in trials)


START, FULL, SPENT = "start", "full", "spent"


def budget_verdict(trials: list[FrozenTrial], n_trials: int) -> str:
    """START a trial, wait while the budget is FULL of running ones, or stop: it is SPENT."""
    spent = n_spent(trials)
    if spent >= n_trials:
        return SPENT
    states = [t.state for t in trials]
    if TrialState.WAITING in states:
        return START  # a re-run of a lost or interrupted trial: it takes that trial's place
    if spent + states.count(TrialState.RUNNING) < n_trials:
        return START
    return FULL
