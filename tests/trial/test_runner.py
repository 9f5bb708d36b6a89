"""Real trials through Trainer, in process: reproducible, failures kept as data, one best model."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore

from hpsearch.errors import TrialFailed
from hpsearch.spec import parse_spec
from hpsearch.storage import (
    BEST_MODEL_ATTR,
    BestModelKeeper,
    open_storage,
    resolve_best_model,
    resolve_storage_url,
)
from hpsearch.storage.best_model import BEST_MODEL_ERROR_ATTR, PENDING_MODEL_ATTR
from hpsearch.study import FAIL_REASON_ATTR
from hpsearch.trial.model_files import model_files
from hpsearch.workers import build_runner

pytestmark = pytest.mark.slow


@pytest.fixture
def runner_and_study(tiny_spec, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("HPSEARCH_CACHE", str(cache_dir))
    tiny_spec["search_space"]["warmup_steps"] = {"choice": [0.0, -1.0]}
    spec = parse_spec(tiny_spec, "t")
    url = resolve_storage_url(f"sqlite:///{tmp_path / 'hp.db'}")
    runner = build_runner(spec, url, "trials")
    study = optuna.create_study(
        storage=open_storage(url),
        study_name="trials",
        direction="maximize",
        pruner=optuna.pruners.NopPruner(),
    )
    return runner, study, tmp_path / "artifacts"


def run_enqueued(study, runner, params, **user_attrs):
    study.enqueue_trial(params, user_attrs=user_attrs or None)
    study.optimize(runner, n_trials=1, catch=(TrialFailed,))
    return study.trials[-1]


def test_a_trial_is_reproducible_from_its_record(runner_and_study):
    runner, study, _ = runner_and_study
    params = {"learning_rate": 2e-4, "per_device_train_batch_size": 16, "warmup_steps": 0.0}
    first = run_enqueued(study, runner, params)
    # The same params and the recorded seed give the same evaluations, step for step.
    again = run_enqueued(study, runner, params, seed=first.user_attrs["seed"])
    assert first.state == again.state == optuna.trial.TrialState.COMPLETE
    assert first.intermediate_values == again.intermediate_values
    assert len(first.intermediate_values) == 2  # evals_per_epoch 2, one epoch
    for key in ("seed", "host", "device", "train_seconds", "n_steps", "n_steps_planned", "metrics"):
        assert key in first.user_attrs
    assert (
        first.user_attrs["n_steps"] == first.user_attrs["n_steps_planned"] == 4
    )  # 64 samples / 16
    assert set(first.user_attrs["metrics"]) >= {"eval_accuracy", "eval_f1_macro", "eval_loss"}


def test_bad_parameters_and_nan_fail_the_trial_not_the_study(runner_and_study):
    runner, study, _ = runner_and_study
    invalid = run_enqueued(
        study,
        runner,
        {"learning_rate": 1e-4, "per_device_train_batch_size": 16, "warmup_steps": -1.0},
    )
    # TrainingArguments refuses a negative warmup: the trial ends FAIL with that reason.
    assert invalid.state == optuna.trial.TrialState.FAIL
    assert invalid.user_attrs[FAIL_REASON_ATTR].startswith(
        "invalid parameters: Got warmup_steps = -1.0"
    )
    huge = run_enqueued(
        study,
        runner,
        {"learning_rate": 1e30, "per_device_train_batch_size": 16, "warmup_steps": 0.0},
    )
    # AdamW moves each weight by about the learning rate: at 1e30 activations overflow to inf/NaN.
    assert huge.state == optuna.trial.TrialState.FAIL
    assert (
        "became nan" in huge.user_attrs[FAIL_REASON_ATTR]
        or "became inf" in huge.user_attrs[FAIL_REASON_ATTR]
    )
    # The study went on: both trials are recorded and optimize returned normally.
    assert len(study.trials) == 2


def test_only_the_best_model_is_kept(runner_and_study):
    runner, study, artifacts = runner_and_study
    model = runner.factory.build(seed=0, knobs={})

    def save(directory):
        model.save_pretrained(directory)
        runner.tokenizer.save_pretrained(directory)

    offered = []
    for value in (0.5, 0.7, 0.6):
        trial = study.ask()
        offered.append((trial, runner.best_model.offer(trial, value, save)))
        study.tell(trial, value)
    # 0.5 is kept first, 0.7 replaces it when COMPLETE, 0.6 is not better and is not uploaded.
    assert [kept for _, kept in offered] == [True, True, False]
    pointer = study.user_attrs[BEST_MODEL_ATTR]
    assert pointer["trial"] == offered[1][0].number and pointer["value"] == 0.7
    # One file is left: the best one. The replaced one's entry is nulled, as the dashboard does.
    assert sorted(p.name for p in Path(artifacts).iterdir()) == [pointer["artifact_id"]]
    entries = {
        k: json.loads(v)
        for k, v in study._storage.get_study_system_attrs(study._study_id).items()
        if k.startswith("artifacts:")
    }
    assert len(entries) == 2
    assert (
        entries[f"artifacts:{pointer['artifact_id']}"]["filename"]
        == f"best-model-trial-{pointer['trial']}.zip"
    )
    assert [v for v in entries.values() if v is None] == [None]
    # The kept archive is a loadable model directory with the real label names.
    with zipfile.ZipFile(Path(artifacts) / pointer["artifact_id"]) as archive:
        names = set(archive.namelist())
        config = json.loads(archive.read("config.json"))
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert sorted(config["id2label"].values()) == ["negative", "neutral", "positive"]


def test_a_failed_model_write_completes_the_trial_without_a_kept_model(
    runner_and_study, tmp_path, caplog
):
    runner, study, _ = runner_and_study
    # The store's directory is gone (a lost mount): writing the model fails.
    runner.best_model = BestModelKeeper(FileSystemArtifactStore(str(tmp_path / "gone")))
    params = {"learning_rate": 2e-4, "per_device_train_batch_size": 16, "warmup_steps": 0.0}
    with caplog.at_level(logging.WARNING, logger="hpsearch.storage"):
        trial = run_enqueued(study, runner, params)
    # The trial's value stands; its model is not kept, and the record and a warning say why.
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.user_attrs[BEST_MODEL_ERROR_ATTR].startswith("FileNotFoundError: ")
    assert f"trial {trial.number}: its model was not kept" in caplog.text
    assert BEST_MODEL_ATTR not in study.user_attrs
    assert PENDING_MODEL_ATTR not in trial.system_attrs
    assert "no model was kept" in resolve_best_model(study).problem


def test_an_interrupted_trial_leaves_no_model_file(runner_and_study):
    runner, study, artifacts = runner_and_study
    model = runner.factory.build(seed=0, knobs={})
    trial = study.ask()
    # Ctrl-C while the model is being written: the write stops (or ends) before the trial does.
    with pytest.raises(KeyboardInterrupt), runner.best_model.uploading(trial) as offer:
        offer(0.5, model_files(model, runner.tokenizer))
        raise KeyboardInterrupt
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    # The FAIL drops the pending model: no file, no pointer.
    assert not Path(artifacts).exists() or list(Path(artifacts).iterdir()) == []
    assert BEST_MODEL_ATTR not in study.user_attrs
