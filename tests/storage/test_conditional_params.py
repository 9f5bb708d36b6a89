"""A conditional search space on each database: alternatives of one name with their own ranges are
stored under the plain name, and a parameter a trial left out is not stored at all."""

from __future__ import annotations

import uuid

import optuna

from hpsearch.spec import parse_spec, suggest_params
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import make_sampler

BATCH = "per_device_train_batch_size"


def test_each_trial_stores_its_own_range_under_the_plain_name(url, tiny_spec):
    tiny_spec["search_space"] = {
        BATCH: {"choice": [16, 32]},
        "learning_rate": [
            {"float": [1e-5, 1e-4], "log": True, "when": {BATCH: 16}},
            {"float": [1e-3, 1e-2], "log": True, "when": {BATCH: 32}},
        ],
        "warmup_ratio": {"float": [0.0, 0.1], "when": {BATCH: 32}},
    }
    tiny_spec["sampler"] = {"name": "tpe", "multivariate": True, "group": True}
    spec = parse_spec(tiny_spec, "t")
    name = f"test-{uuid.uuid4().hex[:10]}"
    storage = open_storage(resolve_storage_url(url))
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=make_sampler(spec.sampler)
    )
    try:
        for _ in range(12):
            trial = study.ask()
            params = suggest_params(trial, spec.searched_params, spec.fixed_values)
            study.tell(trial, params["learning_rate"])
        stored = optuna.load_study(study_name=name, storage=storage).trials
        # Read back from the database: each trial's learning rate with its batch size's range,
        # warmup_ratio only where it was sampled.
        for trial in stored:
            low = 1e-5 if trial.params[BATCH] == 16 else 1e-3
            assert trial.distributions["learning_rate"].low == low
            assert ("warmup_ratio" in trial.params) == (trial.params[BATCH] == 32)
        assert {t.params[BATCH] for t in stored} == {16, 32}
    finally:
        optuna.delete_study(study_name=name, storage=storage)
