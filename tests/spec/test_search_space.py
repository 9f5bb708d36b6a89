"""Sampling from the search space with real Optuna trials."""

from __future__ import annotations

import math

import optuna

from hpsearch.spec import corner_values, parse_spec, split_params, suggest_params


def space(tiny_spec, entries):
    tiny_spec["search_space"] = entries
    tiny_spec["training"] = {}
    return parse_spec(tiny_spec, "t").search_space


def test_samples_stay_in_their_ranges(tiny_spec):
    search_space = space(
        tiny_spec,
        {
            "learning_rate": {"float": [1e-5, 1e-3], "log": True},
            "weight_decay": {"float": [0.0, 0.1], "step": 0.05},
            "num_train_epochs": {"int": [1, 5], "step": 2},
            "per_device_train_batch_size": {"choice": [8, 16, 32]},
            "dropout": {"float": [0.0, 0.3]},
        },
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_epochs = set()
    for _ in range(40):
        trial = study.ask()
        params = suggest_params(trial, search_space)
        # Each value lies in its declared range, on its step grid, or among its choices.
        assert 1e-5 <= params["learning_rate"] <= 1e-3
        assert params["weight_decay"] in (0.0, 0.05, 0.1)
        assert params["num_train_epochs"] in (1, 3, 5)
        assert params["per_device_train_batch_size"] in (8, 16, 32)
        seen_epochs.add(params["num_train_epochs"])
        study.tell(trial, 0.0)
    # The log scale is declared to Optuna, so TPE and friends sample it as such.
    distribution = study.trials[0].distributions["learning_rate"]
    assert distribution.log and math.isclose(distribution.low, 1e-5)
    assert seen_epochs == {1, 3, 5}


def test_split_separates_model_knobs():
    arguments, knobs, generation, peft, distill = split_params(
        {
            "learning_rate": 1e-4,
            "dropout": 0.2,
            "freeze_layers": 2,
            "num_beams": 4,
            "layer_lr_decay": 0.9,
            "gradual_unfreezing": 2,
            "peft.r": 8,
            "distill.alpha": 0.5,
        }
    )
    assert arguments == {"learning_rate": 1e-4}
    assert knobs == {
        "dropout": 0.2,
        "freeze_layers": 2,
        "layer_lr_decay": 0.9,
        "gradual_unfreezing": 2,
    }
    assert generation == {"num_beams": 4}
    assert peft == {"peft.r": 8}
    assert distill == {"distill.alpha": 0.5}


def test_corners_cover_each_end(tiny_spec):
    search_space = space(
        tiny_spec,
        {
            "learning_rate": {"float": [1e-5, 1e-3]},
            "per_device_train_batch_size": {"choice": [8, 16, 32]},
        },
    )
    corners = corner_values(search_space)
    # All at the low end, then each parameter moved alone to its other ends.
    assert corners[0] == {"learning_rate": 1e-5, "per_device_train_batch_size": 8}
    assert {"learning_rate": 1e-3, "per_device_train_batch_size": 8} in corners
    assert {"learning_rate": 1e-5, "per_device_train_batch_size": 32} in corners
    assert len(corners) == 1 + 1 + 2
