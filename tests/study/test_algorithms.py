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
    study.optimize(
        lambda t: (t.suggest_float("x", -1, 1) - 0.2) ** 2 + t.suggest_int("n", 1, 4), n_trials=6
    )
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
    settings = {
        "hyperband": {"min_resource": 2, "reduction_factor": 4},
        "successive_halving": {"min_resource": 2, "reduction_factor": 4},
        "median": {"n_startup_trials": 1, "n_warmup_steps": 2},
        "none": {},
    }[name]
    pruner = make_pruner(PrunerSpec(name=name, **settings))
    expected = {
        "hyperband": optuna.pruners.HyperbandPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "median": optuna.pruners.MedianPruner,
        "none": optuna.pruners.NopPruner,
    }[name]
    assert isinstance(pruner, expected)
    if name == "successive_halving":
        assert pruner._min_resource == 2 and pruner._reduction_factor == 4
    if name == "median":
        assert pruner.min_trials == 1 and pruner._n_warmup_steps == 2


def test_workers_get_their_own_seeds():
    def first_draw(worker_key):
        study = optuna.create_study(
            sampler=make_sampler(SamplerSpec(name="random", seed=0), worker_key)
        )
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
        return study.trials[0].params["x"]

    # A lone worker keeps the spec's seed: it draws what Optuna's RandomSampler(seed=0) draws.
    plain = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plain.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert first_draw(None) == plain.trials[0].params["x"]
    # Workers side by side draw unlike values, each repeatably.
    assert first_draw("cpu0") == first_draw("cpu0")
    assert len({first_draw(None), first_draw("cpu0"), first_draw("cpu1")}) == 3


@pytest.mark.parametrize(
    ("settings", "first"),
    [
        ({"evals_per_epoch": 1}, 1),  # half an epoch rounds up to the first
        ({"evals_per_epoch": 2}, 1),  # exactly half an epoch
        ({"evals_per_epoch": 3}, 2),  # 2/3 of an epoch, not 1/3
        ({"evals_per_epoch": 4}, 2),
        ({"evals_per_epoch": 3, "first_rung": 1.0}, 3),
        ({"evals_per_epoch": 4, "first_rung": 0.25}, 1),
        ({"evals_per_epoch": 4, "min_resource": 3}, 3),  # said in evaluations: taken as said
    ],
)
def test_the_first_rung_is_a_fraction_of_an_epoch(settings, first):
    spec = PrunerSpec(name="successive_halving", **settings)
    assert spec.first_rung_evals == first
    assert make_pruner(spec)._min_resource == first


def test_the_first_rung_is_said_once():
    with pytest.raises(ValueError, match="first_rung .* or min_resource"):
        PrunerSpec(name="hyperband", first_rung=0.5, min_resource=2)
    median = make_pruner(PrunerSpec(name="median", evals_per_epoch=4))
    assert median._n_warmup_steps == 1  # evaluation 2 is the first that can be pruned
    with pytest.raises(ValueError, match="min_trials and n_startup_trials"):
        PrunerSpec(name="median", min_trials=2, n_startup_trials=3)


def trial_reporting(study: optuna.Study, values: list[float], complete: bool = True) -> bool:
    """A trial that reports `values` at evaluations 1, 2, ...; True if the pruner stopped it."""
    trial = study.ask()
    for step, value in enumerate(values, start=1):
        trial.report(value, step)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return True
    study.tell(trial, values[-1] if complete else None)
    return False


def test_nothing_is_pruned_before_min_trials_complete_and_they_set_the_rungs():
    study = optuna.create_study(
        direction="maximize",
        pruner=make_pruner(
            PrunerSpec(
                name="successive_halving",
                evals_per_epoch=1,
                first_rung=1,
                reduction_factor=2,
                min_trials=3,
            )
        ),
    )
    # Each worse than the one before at the first evaluation: none is stopped in the warm-up.
    assert [trial_reporting(study, [v, v]) for v in (0.70, 0.60, 0.50)] == [False, False, False]
    # Now a trial below the warm-up's median is stopped, and one above it goes on.
    assert trial_reporting(study, [0.55, 0.9]) is True
    assert trial_reporting(study, [0.65, 0.9]) is False


def test_without_a_warm_up_a_trial_must_beat_each_one_before_it():
    # What min_trials is for: Optuna's successive halving keeps a rung's first trials only if each
    # beats all that came before, so a second trial 0.01 behind the first is stopped.
    study = optuna.create_study(
        direction="maximize",
        pruner=make_pruner(
            PrunerSpec(
                name="successive_halving",
                evals_per_epoch=1,
                first_rung=1,
                reduction_factor=3,
                min_trials=0,
            )
        ),
    )
    assert trial_reporting(study, [0.70, 0.70]) is False
    assert trial_reporting(study, [0.69, 0.9]) is True


def test_hyperband_keeps_its_type_for_the_samplers():
    # Optuna's samplers draw from a trial's own bracket only if the pruner is a HyperbandPruner.
    pruner = make_pruner(PrunerSpec(name="hyperband", evals_per_epoch=3))
    assert isinstance(pruner, optuna.pruners.HyperbandPruner) and pruner.min_trials == 4
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert len(study.trials) == 3


@pytest.mark.parametrize(
    "pruner",
    [
        {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        {"name": "hyperband", "min_resource": 2},
        {"name": "successive_halving", "first_rung": 1.0, "min_trials": 0},
        {},
    ],
)
def test_a_stored_pruner_spec_reads_back_as_it_was(pruner):
    # A study's spec is stored with every key (unset ones as None) and read back on resume.
    spec = PrunerSpec(**pruner)
    again = PrunerSpec(**spec.model_dump())
    assert again == spec and again.first_rung_evals == spec.first_rung_evals
    assert again.trials_before_pruning == spec.trials_before_pruning
