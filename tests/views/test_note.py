"""The study's note and the workers' records in it, on a real SQLite storage."""

from __future__ import annotations

import warnings

import optuna

from hpsearch.views import register_worker


def test_registering_a_worker_names_the_objective_without_a_warning(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'hp.db'}", study_name="note")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        register_worker(study, "cpu", "eval_accuracy")
    # The dashboard's objective name is set through Optuna, with no deprecation or experimental
    # warning left for the worker's log.
    assert [str(w.message) for w in caught] == []
    assert optuna.load_study(study_name="note", storage=study._storage).metric_names == [
        "eval_accuracy"
    ]
