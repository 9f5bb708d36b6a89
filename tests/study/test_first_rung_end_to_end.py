"""A real median-pruned study prunes nothing before its first rung's evaluation, and does prune."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.storage import open_storage, resolve_storage_url
from tests.conftest import run_hpsearch, write_spec

pytestmark = pytest.mark.slow


def test_a_median_pruned_study_prunes_from_its_first_rung_on(workdir, tiny_spec):
    # 4 optimizer steps, an evaluation after each; half an epoch in: the first rung is evaluation 2.
    tiny_spec["dataset"].update(max_train_samples=64, max_eval_samples=16)
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 16}
    tiny_spec["search_space"] = {"learning_rate": {"float": [1e-6, 1e-3], "log": True}}
    tiny_spec["objective"] = {"metric": "loss"}  # continuous: no ties between trials
    tiny_spec["sampler"] = {"name": "random", "seed": 0}
    tiny_spec["pruner"] = {"name": "median", "evals_per_epoch": 4, "first_rung": 0.5}
    tiny_spec["pruner"]["min_trials"] = 1
    tiny_spec["budget"]["n_trials"] = 6
    write_spec(workdir, "median", tiny_spec)
    result = run_hpsearch("run", "--study", "median", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    url = f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}"
    study = optuna.load_study(study_name="median", storage=open_storage(resolve_storage_url(url)))
    pruned_at = [max(t.intermediate_values) for t in study.trials if t.state.name == "PRUNED"]
    # Every trial evaluated 4 times unless pruned; a pruned one stopped at its last report.
    assert all(len(t.intermediate_values) == 4 for t in study.trials if t.state.name == "COMPLETE")
    # Pruning did happen, and never before evaluation 2.
    assert pruned_at and min(pruned_at) >= 2, pruned_at
