"""Every sampler and pruner a spec may name is built and drives a real study."""

from __future__ import annotations

import typing

import optuna
import pytest

from hpsearch.spec import PrunerSpec, SamplerSpec
from hpsearch.study import make_pruner, make_sampler

SAMPLERS = typing.get_args(SamplerSpec.model_fields["name"].annotation)
PRUNERS = typing.get_args(PrunerSpec.model_fields["name"].annotation)


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_drives_a_study(name):
    startup = {"n_startup_trials": 2} if name in ("tpe", "gp", "cmaes") else {}
    study = optuna.create_study(sampler=make_sampler(SamplerSpec(name=name, seed=3, **startup)))
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.2) ** 2 + t.suggest_int("n", 1, 4), n_trials=6)
    # All six trials ran to completion, with values in the declared ranges.
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 6
    assert all(-1 <= t.params["x"] <= 1 for t in study.trials)


def test_sampler_seed_makes_it_repeatable():
    def draws(seed):
        study = optuna.create_study(sampler=make_sampler(SamplerSpec(name="tpe", seed=seed)))
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=5)
        return [t.params["x"] for t in study.trials]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)


@pytest.mark.parametrize("name", PRUNERS)
def test_pruner_is_built_with_its_settings(name):
    settings = {"hyperband": {"min_resource": 2, "reduction_factor": 4},
                "successive_halving": {"min_resource": 2, "reduction_factor": 4},
                "median": {"n_startup_trials": 1, "n_warmup_steps": 2}, "none": {}}[name]
    pruner = make_pruner(PrunerSpec(name=name, **settings))
    expected = {"hyperband": optuna.pruners.HyperbandPruner, "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
                "median": optuna.pruners.MedianPruner, "none": optuna.pruners.NopPruner}[name]
    assert isinstance(pruner, expected)
    if name == "successive_halving":
        assert pruner._min_resource == 2 and pruner._reduction_factor == 4
    if name == "median":
        assert pruner._n_startup_trials == 1 and pruner._n_warmup_steps == 2


def test_workers_get_their_own_seeds():
    def first_draw(worker_key):
        study = optuna.create_study(sampler=make_sampler(SamplerSpec(name="random", seed=0), worker_key))
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        return study.trials[0].params["x"]

    # A lone worker keeps the spec's seed; workers side by side draw different values, each repeatably.
    assert first_draw(None) == first_draw(None)
    assert first_draw("cpu0") == first_draw("cpu0")
    assert len({first_draw(None), first_draw("cpu0"), first_draw("cpu1")}) == 3
