"""Which trial `hpsearch train` re-trains, with which values, seed and data, and what it refuses."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from hpsearch.errors import HpsearchError, StudyError
from hpsearch.spec import parse_spec
from hpsearch.storage import resolve_storage_url
from hpsearch.study import (
    FINAL_TRAININGS_ATTR,
    choose_trial,
    final_trainings,
    plan_final_training,
    record_final_training,
    stored_spec,
)
from tests.conftest import TINY_SPEC
from tests.views.conftest import make_synthetic_study


@pytest.fixture
def study(tmp_path):
    # Trials 0 and 1 complete (1 is the best, seed 1), 2 pruned, 3 failed, 4 running.
    return make_synthetic_study(tmp_path / "s.db", "final")


@pytest.fixture
def spec(study, tmp_path):
    return stored_spec(optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}"), "final")


def test_the_best_trial_by_default_with_its_values_and_seed(study, spec):
    plan = plan_final_training(study, spec)
    # The best trial (1), its recorded seed, the spec's fixed settings under its parameters.
    assert (plan.trial, plan.seed, plan.trial_value) == (1, 1, 0.72)
    assert plan.values == {"num_train_epochs": 1, "learning_rate": 2e-4}
    assert plan.params == {"learning_rate": 2e-4} and plan.fixed == {"num_train_epochs": 1}
    assert plan.trial_interval == [0.6, 0.84]
    # Without --full-data the search's caps stay: the same data as the trial's.
    assert plan.spec == spec and not plan.full_data


def test_epochs_and_full_data(study, spec):
    plan = plan_final_training(study, spec, 0, full_data=True, epochs=2.5)
    # Trial 0 recorded no seed: the one the runner gave it (spec seed + trial number).
    assert (plan.trial, plan.seed, plan.trial_value) == (0, spec.seed + 0, 0.61)
    assert plan.values["num_train_epochs"] == 2.5 and plan.fixed == {"num_train_epochs": 2.5}
    # Full data drops the training cap only; the eval set (its cap, split and seed) is the search's.
    assert spec.dataset.max_train_samples == 64 and plan.spec.dataset.max_train_samples is None
    assert plan.spec.dataset.max_eval_samples == spec.dataset.max_eval_samples
    assert plan.spec.dataset.model_dump(exclude={"max_train_samples"}) == spec.dataset.model_dump(
        exclude={"max_train_samples"}
    )


def test_epochs_override_a_searched_epoch_count_and_max_steps(tmp_path):
    raw = json.loads(json.dumps(TINY_SPEC))
    raw["budget"]["n_trials"] = 6
    raw["training"] = {"max_steps": 7}
    raw["search_space"]["num_train_epochs"] = {"choice": [1, 2]}
    made = make_synthetic_study(tmp_path / "e.db", "epochs", raw)
    made.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            value=0.8,
            params={"learning_rate": 1e-4, "num_train_epochs": 2},
            distributions={
                "learning_rate": optuna.distributions.FloatDistribution(1e-5, 3e-4, log=True),
                "num_train_epochs": optuna.distributions.CategoricalDistribution([1, 2]),
            },
        )
    )
    plan = plan_final_training(made, parse_spec(raw, "t"), epochs=0.5)
    # The epochs asked for replace the searched ones; max_steps, which would override them, goes.
    assert plan.values == {"learning_rate": 1e-4, "num_train_epochs": 0.5}
    assert plan.fixed == {"num_train_epochs": 0.5}
    with pytest.raises(HpsearchError, match="--epochs must be more than 0, but got 0"):
        plan_final_training(made, parse_spec(raw, "t"), epochs=0)


def test_a_trial_of_a_ddp_group_keeps_its_effective_batch_on_one_device(tmp_path):
    raw = json.loads(json.dumps(TINY_SPEC))
    raw["training"] = {"num_train_epochs": 1, "gradient_accumulation_steps": 3}
    made = make_synthetic_study(tmp_path / "g.db", "group", raw)
    made.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            value=0.9,
            params={"learning_rate": 1e-4},
            distributions={
                "learning_rate": optuna.distributions.FloatDistribution(1e-5, 3e-4, log=True)
            },
            # Trained by a group of 2 DDP ranks: 16 x 2 ranks x 3 accumulated = 96 a step.
            user_attrs={"world_size": 2, "effective_batch_size": 96},
        )
    )
    plan = plan_final_training(made, parse_spec(raw, "t"))
    # One process trains it again: twice the accumulation, the same 96 examples per step.
    assert plan.trial_devices == 2 and plan.values["gradient_accumulation_steps"] == 6
    assert plan.fixed == {"num_train_epochs": 1, "gradient_accumulation_steps": 6}
    # A trial trained alone keeps its accumulation (and the plan adds no setting of its own).
    alone = plan_final_training(made, parse_spec(raw, "t"), 0)
    assert alone.trial_devices == 1 and alone.values["gradient_accumulation_steps"] == 3


def test_a_pruned_trial_trains_with_its_last_evaluation_as_reference(study, spec):
    plan = plan_final_training(study, spec, 2)
    assert plan.trial == 2 and plan.trial_value == 0.5  # its one intermediate value


@pytest.mark.parametrize(
    ("number", "message"),
    [
        (
            3,
            (
                "trial 3 of study 'final' is FAIL (out of memory (batch size 64)): only a "
                "COMPLETE or PRUNED trial"
            ),
        ),
        (4, "trial 4 of study 'final' is RUNNING: only a COMPLETE or PRUNED trial"),
        (9, "study 'final' has no trial 9; its trials are 0-4"),
    ],
)
def test_trials_that_cannot_be_trained_again(study, number, message):
    with pytest.raises(StudyError) as refused:
        choose_trial(study, number)
    assert str(refused.value).startswith(message)


def test_a_study_without_a_complete_trial_has_no_default(tmp_path, tiny_spec):
    from hpsearch.storage import open_storage
    from hpsearch.study import open_study

    empty, _ = open_study(
        open_storage(resolve_storage_url(f"sqlite:///{tmp_path / 'n.db'}")),
        "empty",
        parse_spec(tiny_spec, "t"),
    )
    with pytest.raises(StudyError, match="study 'empty' has no complete trial to train yet"):
        choose_trial(empty, None)


def test_records_are_appended_in_order(study):
    assert final_trainings(study) == []
    record_final_training(study, {"trial": 1})
    record_final_training(study, {"trial": 0})
    # Oldest first, in the study user attribute the dashboard shows.
    assert final_trainings(study) == [{"trial": 1}, {"trial": 0}]
    assert study.user_attrs[FINAL_TRAININGS_ATTR] == [{"trial": 1}, {"trial": 0}]
