"""A multi-objective study prunes on its first objective with each of the spec's pruners, as a
study of that objective alone would (Optuna's own pruners refuse a multi-objective study)."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.spec import PrunerSpec
from hpsearch.study.algorithms import make_pruner
from hpsearch.study.quality_pruning import REPORTS_ATTR, QualityPruning

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
    # A fixed name: Hyperband puts a trial in a bracket by a hash of the study's name and the
    # trial's number, and a random name put the bad trial, now and then, in the bracket that
    # prunes nothing before the last evaluation.
    study = optuna.create_study(
        storage=storage, study_name="quality", directions=["maximize", "minimize"]
    )
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
    # Its evaluations before the decision are recorded in its user attribute, not as Optuna's
    # intermediate values (which Optuna's TPE cannot read in a multi-objective study).
    reports = pruned.user_attrs[REPORTS_ATTR]
    assert 1 <= len(reports) < N_EVALS and set(reports.values()) == {0.1}
    assert pruned.intermediate_values == {}


def test_tpe_samples_a_multi_objective_study_with_pruned_trials(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'p.db'}")
    study = optuna.create_study(
        storage=storage,
        directions=["maximize", "minimize"],
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2),
    )
    pruner = make_pruner(PrunerSpec(name="median", evals_per_epoch=2, min_trials=2), N_EVALS)
    curves = [[0.6, 0.7, 0.8, 0.9]] * 3 + [[0.1] * N_EVALS] * 3

    def objective(trial):
        trial.suggest_float("x", 0, 1)
        if run_trial_in(trial, pruner, curves[trial.number]) is None:
            raise optuna.TrialPruned()
        return curves[trial.number][-1], 10.0

    # TPE samples after pruned trials (it reads a pruned trial's intermediate values with
    # study.direction, which a multi-objective study does not have: none are stored).
    study.optimize(objective, n_trials=len(curves))
    assert optuna.trial.TrialState.PRUNED in {t.state for t in study.trials}


def run_trial_in(trial, pruner, curve: list[float]) -> float | None:
    """Report `curve` in a trial that study.optimize runs; None if it is pruned."""
    reporter = QualityPruning(trial, pruner)
    for step, value in enumerate(curve, start=1):
        reporter.report(value, step)
        if step < len(curve) and reporter.should_prune():
            return None
    return curve[-1]
