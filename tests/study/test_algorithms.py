"""Every sampler and pruner a spec may name is built and drives a real study."""

from __future__ import annotations

import typing

import optuna
import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import PrunerSpec, SamplerSpec, StudySpec, parse_spec
from hpsearch.study import make_pruner, make_sampler, open_study
from hpsearch.study.algorithms import max_evaluations

SAMPLERS = typing.get_args(SamplerSpec.model_fields["name"].annotation)
PRUNERS = typing.get_args(PrunerSpec.model_fields["name"].annotation)


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_drives_a_study(name):
    startup = {"n_startup_trials": 2} if name in ("tpe", "gp", "cmaes", "auto") else {}
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
        # Two evaluations before it can prune: Optuna's first pruned step is evaluation 3.
        assert pruner.min_trials == 1 and pruner._n_warmup_steps == 3


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_start_number_draws_its_own_suggestions(name):
    # QMC's sequence is the study's (its index is kept in the storage); only the draws before the
    # first complete trial are each process's own.
    n_draws = 1 if name == "qmc" else 2

    def first_draws(start):
        startup = {"n_startup_trials": 2} if name in ("tpe", "gp", "cmaes", "auto") else {}
        spec = SamplerSpec(name=name, seed=0, **startup)
        study = optuna.create_study(sampler=make_sampler(spec, start))
        study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("n", 0, 10**6), n_draws)
        return [tuple(t.params.values()) for t in study.trials]

    # Start 0 keeps the spec's seed: it draws what a sampler seeded with it draws.
    plain = optuna.samplers.RandomSampler(seed=0)
    if name == "random":
        study = optuna.create_study(sampler=plain)
        study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("n", 0, 10**6), 2)
        assert first_draws(0) == [tuple(t.params.values()) for t in study.trials]
    # Each start draws repeatably, and unlike every other start.
    assert first_draws(1) == first_draws(1)
    draws = [first_draws(start) for start in range(4)]
    assert len({d for each in draws for d in each}) == 4 * n_draws


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
    assert median._n_warmup_steps == 2  # evaluation 2 is the first that can be pruned
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


def trial_until_pruned(study: optuna.Study, values: list[float]) -> int | None:
    """A trial reporting `values` at evaluations 1, 2, ...; the evaluation it was pruned at, or None
    if it ran to its end (then it is told COMPLETE)."""
    trial = study.ask()
    for step, value in enumerate(values, start=1):
        trial.report(value, step)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return step
    study.tell(trial, values[-1])
    return None


def spec_with_pruner(**pruner) -> StudySpec:
    """A study of 4 evaluations a trial (one epoch, 4 per epoch) with the given pruner."""
    return parse_spec(
        {
            "model": "m",
            "dataset": {"source": "d.csv"},
            "search_space": {"learning_rate": {"float": [1e-5, 1e-3]}},
            "training": {"num_train_epochs": 1},
            "pruner": {"evals_per_epoch": 4, **pruner},
            "budget": {"n_trials": 10},
        },
        "test",
    )


@pytest.mark.parametrize("name", ["median", "successive_halving", "hyperband"])
def test_nothing_is_pruned_before_the_first_rung_and_something_can_be_at_it(name):
    spec = spec_with_pruner(name=name, first_rung=0.5, min_trials=1)
    # Half an epoch at 4 evaluations per epoch: evaluation 2 is the first rung.
    assert spec.pruner.first_rung_evals == 2
    study = optuna.create_study(
        direction="maximize", pruner=make_pruner(spec.pruner, max_evaluations(spec))
    )
    # One good trial completes: the warm-up of one trial is over.
    assert trial_until_pruned(study, [0.9, 0.9, 0.9, 0.9]) is None
    # A far worse trial goes on past evaluation 1 and is stopped at evaluation 2, the first rung.
    assert trial_until_pruned(study, [0.1, 0.1, 0.1, 0.1]) == 2


def test_the_median_pruners_first_rung_is_optunas_first_pruned_step():
    # Optuna prunes from step == n_warmup_steps on; hpsearch reports evaluation k as step k.
    for first in (1, 2, 3):
        pruner = make_pruner(PrunerSpec(name="median", min_resource=None, n_warmup_steps=first - 1))
        assert pruner._n_warmup_steps == first


def test_warm_up_trials_of_one_process_are_the_competitors_of_a_process_joining_later(tmp_path):
    from hpsearch.storage import open_storage, resolve_storage_url

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    spec = spec_with_pruner(name="hyperband", first_rung=0.5, min_trials=3)
    first_process, _ = open_study(open_storage(resolve_storage_url(url)), "s", spec)
    # Three warm-up trials train side by side in the first process, none complete until all have
    # reported every evaluation (0.9, 0.8 and 0.7 throughout): none is pruned, all are recorded.
    trials = [first_process.ask() for _ in range(3)]
    for step in range(1, 5):
        for trial, value in zip(trials, (0.9, 0.8, 0.7), strict=True):
            trial.report(value, step)
            assert not trial.should_prune()
    for trial, value in zip(trials, (0.9, 0.8, 0.7), strict=True):
        first_process.tell(trial, value)
    # A second process joins now; its first trial, far below all three at the first rung, is
    # measured against them and stopped there (Optuna keeps 1 in 3 of a rung).
    late_process, _ = open_study(open_storage(resolve_storage_url(url)), "s", spec)
    assert trial_until_pruned(late_process, [0.5, 0.5, 0.5, 0.5]) == 2
    # And the first process agrees: a trial as bad there is stopped at the same rung.
    assert trial_until_pruned(first_process, [0.5, 0.5, 0.5, 0.5]) == 2


def test_tpe_takes_its_settings_and_lies_about_running_trials_by_default():
    chosen = make_sampler(
        SamplerSpec(
            name="tpe", multivariate=True, group=True, constant_liar=False, n_ei_candidates=7
        )
    )
    # Each setting reaches Optuna's sampler (read from its private fields: Optuna shows no other).
    assert (chosen._multivariate, chosen._group, chosen._constant_liar) == (True, True, False)
    assert chosen._n_ei_candidates == 7
    # Unset: the constant liar is on, so parallel workers spread out; the rest is Optuna's default.
    default = make_sampler(SamplerSpec(name="tpe"))
    assert (default._multivariate, default._group, default._constant_liar) == (False, False, True)
    assert default._n_ei_candidates == 24


@pytest.mark.parametrize(
    "sampler, expected",
    [
        (
            {"name": "random", "multivariate": True},
            "sampler: the random sampler takes no multivariate (only tpe does)",
        ),
        (
            {"name": "gp", "n_ei_candidates": 8},
            "sampler: the gp sampler takes no n_ei_candidates (only tpe does)",
        ),
        (
            {"name": "auto", "constant_liar": False},
            "sampler: the auto sampler takes no constant_liar (only tpe does)",
        ),
        ({"name": "tpe", "group": True}, "sampler.group: needs multivariate: true"),
        ({"name": "tpe", "n_ei_candidates": 0}, "sampler.n_ei_candidates: Input should be"),
    ],
)
def test_sampler_settings_of_another_sampler_are_refused(tiny_spec, sampler, expected):
    tiny_spec["sampler"] = sampler
    with pytest.raises(SpecError) as error:
        parse_spec(tiny_spec, "t")
    assert expected in error.value.message


@pytest.mark.parametrize(
    "space, sampler, expected",
    [
        (
            {"learning_rate": {"float": [1e-5, 1e-3]}, "freeze_layers": {"choice": [0, 2]}},
            "cmaes",
            "sampler.name: cmaes searches numbers only, and search_space.freeze_layers is a choice",
        ),
        (
            {
                "freeze_layers": {"choice": [0, 2]},
                "warmup_ratio": {"float": [0, 0.1], "when": {"freeze_layers": 2}},
            },
            "gp",
            (
                "sampler.name: gp searches one space fixed for the study, and "
                "search_space.warmup_ratio is conditional (when:)"
            ),
        ),
        (
            {
                "freeze_layers": {"choice": [0, 2]},
                "warmup_ratio": {"float": [0, 0.1], "when": {"freeze_layers": 2}},
            },
            "qmc",
            "sampler.name: qmc searches one space fixed",
        ),
    ],
)
def test_a_sampler_that_cannot_search_the_space_is_refused(tiny_spec, space, sampler, expected):
    tiny_spec["search_space"] = space
    tiny_spec["sampler"] = {"name": sampler}
    with pytest.raises(SpecError) as error:
        parse_spec(tiny_spec, "t")
    assert expected in error.value.message


@pytest.mark.parametrize(
    "space, chosen",
    [
        # Numeric ranges only: the Gaussian process.
        (
            {"learning_rate": {"float": [1e-5, 1e-3]}, "warmup_steps": {"int": [0, 9]}},
            {"name": "gp"},
        ),
        # A choice: multivariate TPE.
        (
            {"learning_rate": {"float": [1e-5, 1e-3]}, "freeze_layers": {"choice": [0, 2]}},
            {"name": "tpe", "multivariate": True, "group": False},
        ),
        # A conditional parameter: multivariate TPE by groups.
        (
            {
                "freeze_layers": {"choice": [0, 2]},
                "warmup_ratio": {"float": [0, 0.1], "when": {"freeze_layers": 2}},
            },
            {"name": "tpe", "multivariate": True, "group": True},
        ),
    ],
)
def test_auto_chooses_the_sampler_for_the_space_and_stores_the_choice(tiny_spec, space, chosen):
    tiny_spec["search_space"] = space
    tiny_spec["sampler"] = {"name": "auto", "n_startup_trials": 3}
    spec = parse_spec(tiny_spec, "t")
    stored = spec.to_dict()["sampler"]
    assert {k: stored[k] for k in chosen} == chosen
    # The n_startup_trials it was given goes to the chosen sampler; the stored spec reads back.
    assert stored["n_startup_trials"] == 3
    assert StudySpec.model_validate(spec.to_dict()) == spec


def test_max_evaluations_counts_the_default_epochs_of_trials_that_leave_them_out(tiny_spec):
    tiny_spec["training"] = {}
    tiny_spec["search_space"]["num_train_epochs"] = {
        "choice": [1, 2],
        "when": {"per_device_train_batch_size": 16},
    }
    tiny_spec["pruner"] = {"name": "hyperband", "evals_per_epoch": 2}
    # Trials at batch 32 train Trainer's 3 epochs: 6 evaluations, not the choice's 4.
    assert max_evaluations(parse_spec(tiny_spec, "t")) == 6
    del tiny_spec["search_space"]["num_train_epochs"]["when"]
    assert max_evaluations(parse_spec(tiny_spec, "t")) == 4
