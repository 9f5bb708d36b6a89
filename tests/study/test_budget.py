"""The study-wide budget: what counts, and when a worker may start a trial."""

from __future__ import annotations

from optuna.trial import TrialState, create_trial

from hpsearch.study import (
    FAIL_REASON_ATTR,
    FULL,
    INTERRUPTED,
    LOST,
    SPENT,
    START,
    budget_verdict,
    n_spent,
)


def trial(state: TrialState, reason: str | None = None):
    attrs = {FAIL_REASON_ATTR: reason} if reason else {}
    value = 0.5 if state == TrialState.COMPLETE else None
    frozen = (
        create_trial(state=state, value=value, user_attrs=attrs)
        if state != TrialState.RUNNING
        else None
    )
    if frozen is None:  # create_trial makes finished or waiting trials only
        frozen = create_trial(state=TrialState.WAITING)
        frozen.state = TrialState.RUNNING
    return frozen


def test_what_counts():
    trials = [
        trial(TrialState.COMPLETE),
        trial(TrialState.PRUNED),
        trial(TrialState.FAIL, "out of memory (batch size 64)"),  # failed on its own: counts
        trial(TrialState.FAIL, INTERRUPTED),  # Ctrl-C: re-run, not counted
        trial(TrialState.FAIL, LOST),  # lost with its worker: re-run, not counted
        trial(TrialState.FAIL),  # lost, in a study from before lost trials had a reason
        trial(TrialState.FAIL, "lost 4 times (heartbeat.max_retries is 3); not re-run"),  # counts
        trial(TrialState.RUNNING),
        trial(TrialState.WAITING),
    ]
    # Complete, pruned, out of memory and lost too often count; the re-run ones and the rest do not.
    assert n_spent(trials) == 4


def test_verdicts():
    done = [trial(TrialState.COMPLETE)] * 3
    # Room left: start. All slots taken by running trials: wait. Budget met: stop.
    assert budget_verdict(done, 5) == START
    assert budget_verdict(done + [trial(TrialState.RUNNING)] * 2, 5) == FULL
    assert budget_verdict(done, 3) == SPENT
    # A waiting re-run takes the place of the trial it replaces, even when the rest is running.
    assert budget_verdict(done + [trial(TrialState.RUNNING), trial(TrialState.WAITING)], 5) == START
    assert budget_verdict([], 1) == START
