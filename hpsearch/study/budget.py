"""The study-wide trial budget: which trials count toward it and how many remain.

A trial counts once it has finished on its own: COMPLETE, PRUNED, or FAIL with a recorded reason
(NaN, out of memory, bad parameters). A trial interrupted by Ctrl-C or lost with its worker does not
count: it has exactly one re-run, which counts in its place (hpsearch.storage.rerun). A FAIL with no
reason at all (a study from before lost trials recorded one) does not count either, nor does one
stopped by a bug of hpsearch (reason BUG, its traceback in TRACEBACK_ATTR): its configuration was
never tried, and the worker stopped. A RUNNING or WAITING trial holds a slot: it will count, or be
re-run in it.

The worker loop checks the budget under the study lock, and the storage checks it again in the
transaction that creates each trial (`enforce_budget`): the lock spares the workers a crowd of
refused creations, the storage's check is what the budget rests on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.storage import FAIL_REASON_ATTR, RERUN_REASONS, refuse_trials_beyond

BUG = "bug in hpsearch"  # the fail_reason of a trial stopped by a bug of hpsearch (errors.TrialBug)
TRACEBACK_ATTR = "traceback"  # that trial's user attribute: the bug's traceback
UNCOUNTED_REASONS = RERUN_REASONS | {BUG}


def counts_toward_budget(trial: FrozenTrial) -> bool:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    reason = trial.user_attrs.get(FAIL_REASON_ATTR)
    return trial.state == TrialState.FAIL and reason is not None and reason not in UNCOUNTED_REASONS


def enforce_budget(study: optuna.Study, n_trials: int) -> None:
    """Have this process's storage refuse (BudgetFull) a new trial once every slot of `n_trials`
    is held; it counts as `counts_toward_budget` does, plus the RUNNING and WAITING trials."""
    refuse_trials_beyond(
        study,
        n_trials,
        fail_reason_attr=FAIL_REASON_ATTR,
        uncounted_reasons=tuple(sorted(UNCOUNTED_REASONS)),
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
