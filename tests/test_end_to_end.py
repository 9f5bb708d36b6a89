"""`hpsearch run` through the CLI on the shipped model and data, checked in the storage after."""

from __future__ import annotations

import json
import zipfile

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta

from hpsearch.storage import BEST_MODEL_ATTR
from hpsearch.study import SPEC_ATTR
from tests.conftest import run_hpsearch, write_spec

pytestmark = pytest.mark.slow

GOOD_LR, BAD_LR = 3e-4, 1e-7


@pytest.fixture
def e2e_spec(tiny_spec):
    # Random sampler seed 11 draws GOOD, BAD, BAD, BAD. A head trained at 1e-7 keeps a loss of about
    # ln 3 while 3e-4 lowers it within six steps, so the median pruner stops each BAD trial at its
    # first evaluation whatever the machine.
    tiny_spec["dataset"].update(max_train_samples=192, max_eval_samples=48)
    tiny_spec["objective"] = {"metric": "loss"}
    tiny_spec["search_space"] = {"learning_rate": {"choice": [GOOD_LR, BAD_LR]}}
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 16}
    tiny_spec["sampler"] = {"name": "random", "seed": 11}
    tiny_spec["pruner"] = {
        "name": "median",
        "evals_per_epoch": 2,
        "n_startup_trials": 1,
        "n_warmup_steps": 0,
    }
    tiny_spec["budget"] = {"n_trials": 3}
    return tiny_spec


def test_run_resume_and_extend(workdir, e2e_spec):
    write_spec(workdir, "e2e", e2e_spec)
    result = run_hpsearch("run", "--study", "e2e", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "3/3 spent" in result.stdout and "best eval_loss" in result.stdout

    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    study = optuna.load_study(study_name="e2e", storage=storage)
    trials = study.trials
    states = [t.state.name for t in trials]
    # The good trial completes; the bad ones are pruned at their first evaluation.
    assert states == ["COMPLETE", "PRUNED", "PRUNED"]
    assert [t.params["learning_rate"] for t in trials] == [GOOD_LR, BAD_LR, BAD_LR]
    # An intermediate value per evaluation: two for the complete trial (2 an epoch), one if pruned.
    assert [len(t.intermediate_values) for t in trials] == [2, 1, 1]
    assert all(len(t.intermediate_values) == t.user_attrs["n_evals"] for t in trials)
    assert trials[0].value == trials[0].intermediate_values[2]
    # The pruned trials trained fewer steps than planned; that saving is in the summary.
    assert all(t.user_attrs["n_steps"] < t.user_attrs["n_steps_planned"] for t in trials[1:])
    assert "saved by pruning" in result.stdout

    # The spec is stored with the study, exactly as written (defaults filled in).
    stored = study.user_attrs[SPEC_ATTR]
    assert stored["search_space"] == {"learning_rate": {"choice": [GOOD_LR, BAD_LR]}}
    assert stored["budget"]["n_trials"] == 3

    # The best model is kept as a study artifact in storage/artifacts, and only it; each trial has
    # its metrics file (one entry per evaluation) beside it.
    pointer = study.user_attrs[BEST_MODEL_ATTR]
    assert pointer["trial"] == 0
    artifact = workdir / "storage" / "artifacts" / pointer["artifact_id"]
    assert [m.artifact_id for m in get_all_artifact_meta(study)] == [pointer["artifact_id"]]
    for trial in trials:
        (meta,) = get_all_artifact_meta(trial, storage=storage)
        assert meta.filename == f"metrics-trial-{trial.number}.json"
        record = json.loads((artifact.parent / meta.artifact_id).read_text())
        assert [e["evaluation"] for e in record["evaluations"]] == list(
            range(1, trial.user_attrs["n_evals"] + 1)
        )
    assert len(list(artifact.parent.iterdir())) == 1 + len(trials)
    with zipfile.ZipFile(artifact) as archive:
        assert json.loads(archive.read("config.json"))["id2label"] == {
            "0": "negative",
            "1": "neutral",
            "2": "positive",
        }

    # Running again: the budget is spent, nothing more runs, and it says so with exit code 0.
    again = run_hpsearch("run", "--study", "e2e", cwd=workdir)
    assert again.returncode == 0, again.stderr
    assert "has spent its budget of 3 trials" in again.stdout
    assert len(study.trials) == 3

    # Raising the budget runs only what is missing: exactly one more trial.
    extended = run_hpsearch("run", "--study", "e2e", "--n-trials", "4", cwd=workdir)
    assert extended.returncode == 0, extended.stderr
    assert "budget.n_trials: 3 -> 4" in extended.stdout
    assert len(study.trials) == 4
    assert study.user_attrs[SPEC_ATTR]["budget"]["n_trials"] == 4

    # A changed spec is refused, and the study is left as it was.
    e2e_spec["dataset"]["max_length"] = 48
    write_spec(workdir, "e2e", e2e_spec)
    refused = run_hpsearch("run", "--study", "e2e", cwd=workdir)
    assert refused.returncode == 1
    assert "dataset.max_length: 32 -> 48" in refused.stderr
    assert "--study-name e2e-2" in refused.stderr
    assert len(study.trials) == 4
