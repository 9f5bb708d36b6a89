"""A multi-objective study prunes on its first objective with each of the spec's pruners, as a
study of that objective alone would (Optuna's own pruners refuse a multi-objective study)."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.spec.schema import PrunerSpec
from hpsearch.study.algorithms import make_pruner
from hpsearch.study.quality_pruning import QualityPruning

N_EVALS = 4


def run_trial(study, pruner, curve: list[float], latency: float) -> optuna.trial.TrialState:
    """Report `curve` evaluation by evaluation, stopping where the pruner says; tell the end."""
    trial = study.ask()
    reporter = QualityPruning(trial, pruner)
    for step, value in enumerate(curve, start=1):
        reporter.report(value, step)
        if step < len(curve) and reporter.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return optuna.trial.TrialState.PRUNED
    study.tell(trial, [curve[-1], latency])
    return optuna.trial.TrialState.COMPLETE


@pytest.mark.parametrize("name", ["median", "successive_halving", "hyperband"])
def test_a_bad_trial_is_pruned_on_the_first_objective(tmp_path, name):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'p.db'}")
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    pruner = make_pruner(
        PrunerSpec(name=name, evals_per_epoch=2, first_rung=0.5, min_trials=3), N_EVALS
    )
    good = [0.6, 0.7, 0.8, 0.9]
    # The warm-up trials complete whatever they report (min_trials: 3).
    states = [run_trial(study, pruner, good, latency=10.0 + k) for k in range(3)]
    assert states == [optuna.trial.TrialState.COMPLETE] * 3
    # A trial far below them on accuracy is pruned, however low its latency would have been.
    assert run_trial(study, pruner, [0.1] * N_EVALS, latency=1.0) == optuna.trial.TrialState.PRUNED
    pruned = study.trials[-1]
    # Its evaluations before the decision are stored as Optuna's intermediate values.
    assert 1 <= len(pruned.intermediate_values) < N_EVALS
    assert set(pruned.intermediate_values.values()) == {0.1}
