"""Early stopping in a trial, `objective.value: best` with its kept weights, effective batches."""

from __future__ import annotations

import copy
import json

import optuna
import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from hpsearch.errors import TrialFailed
from hpsearch.spec import parse_spec
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import summarize
from hpsearch.trial import OptunaPruningCallback
from hpsearch.trial.best_evaluation import BestEvaluation
from hpsearch.workers import build_runner
from tests.conftest import TINY_SPEC, run_hpsearch, run_study


def follow(values, maximize=True, patience=None, min_delta=0.0, max_steps=100):
    """Feed `values` as consecutive evaluations; the evaluation where training was told to stop."""
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    primary = OptunaPruningCallback(study.ask(), "eval_accuracy", evals_per_epoch=1)
    best = BestEvaluation(primary, maximize=maximize, patience=patience, min_delta=min_delta)
    args = TrainingArguments(output_dir="/tmp/unused", report_to="none")
    state = TrainerState(max_steps=max_steps)
    for index, value in enumerate(values, start=1):
        control = TrainerControl()
        state.global_step = index
        metrics = {"eval_accuracy": value, "eval_loss": 1.0}
        primary.on_evaluate(args, state, control, metrics=metrics)
        best.on_evaluate(args, state, control)
        if control.should_training_stop:
            return best, index
    return best, None


def test_patience_counts_evaluations_without_an_improvement():
    best, stopped_at = follow([0.5, 0.6, 0.6, 0.55, 0.7], patience=2)
    # 0.6 at evaluation 2, then two evaluations that do not beat it: stop at evaluation 4.
    assert stopped_at == 4 and best.stopped_early
    assert (best.best_value, best.best_evaluation) == (0.6, 2)


def test_an_improvement_below_min_delta_does_not_count():
    best, stopped_at = follow([0.5, 0.505, 0.509, 0.6], patience=2, min_delta=0.01)
    assert stopped_at == 3 and best.best_evaluation == 1


def test_minimizing_counts_a_lower_value_as_better():
    best, stopped_at = follow([1.0, 0.8, 0.9, 0.7, 0.75, 0.76], maximize=False, patience=2)
    assert stopped_at == 6 and (best.best_value, best.best_evaluation) == (0.7, 4)


def test_the_final_step_is_never_an_early_stop():
    # Patience runs out on the final step: the trial ended anyway, it did not stop early.
    best, stopped_at = follow([0.5, 0.4, 0.4], patience=2, max_steps=3)
    assert stopped_at is None and not best.stopped_early


@pytest.fixture
def runner_for(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("HPSEARCH_CACHE", str(cache_dir))

    def make(**changes):
        raw = copy.deepcopy(TINY_SPEC)
        for key, value in changes.items():
            raw[key] = (
                value if not isinstance(value, dict) or key not in raw else {**raw[key], **value}
            )
        spec = parse_spec(raw, "t")
        url = resolve_storage_url(f"sqlite:///{tmp_path / 'hp.db'}")
        runner = build_runner(spec, url, "t")
        study = optuna.create_study(
            storage=open_storage(url),
            study_name="t",
            direction="maximize",
            pruner=optuna.pruners.NopPruner(),
        )
        return spec, runner, study

    return make


@pytest.mark.slow
def test_an_early_stopped_trial_completes_and_the_study_says_what_it_saved(runner_for):
    # min_delta 1.0: no evaluation after the first can count as an improvement of accuracy, so
    # with patience 2 the trial stops at its 3rd of 6 evaluations.
    spec, runner, study = runner_for(
        early_stopping={"patience": 2, "min_delta": 1.0}, training={"num_train_epochs": 3}
    )
    study.enqueue_trial({"learning_rate": 1e-4, "per_device_train_batch_size": 16})
    study.optimize(runner, n_trials=1, catch=(TrialFailed,))
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE  # not PRUNED: the pruner did not stop it
    assert len(trial.intermediate_values) == 3
    attrs = trial.user_attrs
    assert (
        attrs["stopped_early"] is True and attrs["n_steps"] == 6 and attrs["n_steps_planned"] == 12
    )
    assert attrs["early_stopping_steps_saved"] == 6
    # value: last (the default) is the last evaluation's.
    assert trial.value == trial.intermediate_values[3]
    summary = summarize(study, spec)
    assert summary.stopped_early == (0,) and summary.early_stopping_steps_saved == 6
    assert summary.early_stopping_seconds_saved > 0


@pytest.mark.slow
def test_value_best_is_the_best_evaluation_and_keeps_its_weights(runner_for, tmp_path):
    from hpsearch.trial.fit import start_fit

    spec, runner, _ = runner_for(objective={"value": "best"}, training={"num_train_epochs": 3})
    values = {**spec.training, "learning_rate": 3e-4, "per_device_train_batch_size": 16}
    fitting = start_fit(
        spec, runner.data, runner.factory, runner.tokenizer, values, seed=0, scratch=tmp_path
    )
    fitting.train()
    history = fitting.callback.history
    losses = [h["eval_loss"] for h in history]
    accuracies = [h["eval_accuracy"] for h in history]
    best_index = max(
        range(len(accuracies)), key=lambda i: (accuracies[i], -i)
    )  # the first of the best
    assert fitting.value == accuracies[best_index] == max(accuracies)
    assert fitting.metrics["eval_loss"] == losses[best_index]
    # The kept weights are that evaluation's: evaluated again they give its loss, not the last's.
    fitting.keep_best_weights()
    again = fitting.trainer.evaluate()
    assert again["eval_loss"] == pytest.approx(losses[best_index], abs=1e-6)
    if best_index != len(losses) - 1:
        assert again["eval_loss"] != pytest.approx(losses[-1], abs=1e-6)


@pytest.mark.slow
def test_rungs_mean_the_same_data_whatever_the_batch_and_accumulation(workdir):
    spec = copy.deepcopy(TINY_SPEC)
    spec["dataset"]["max_train_samples"] = 128
    spec["search_space"] = {
        "per_device_train_batch_size": {"choice": [8, 16]},
        "gradient_accumulation_steps": {"choice": [1, 2]},
    }
    spec["training"] = {"num_train_epochs": 1, "learning_rate": 1e-4}
    spec["pruner"] = {"name": "none", "evals_per_epoch": 4}
    spec["sampler"] = {"name": "random", "seed": 1}
    spec["budget"]["n_trials"] = 4
    _, study = run_study(workdir, "batches", spec)
    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    sizes = set()
    for trial in study.trials:
        effective = (
            trial.params["per_device_train_batch_size"]
            * trial.params["gradient_accumulation_steps"]
        )
        assert trial.user_attrs["effective_batch_size"] == effective
        sizes.add(effective)
        metrics_file = workdir / "storage" / "artifacts" / _metrics_artifact(storage, trial)
        steps = json.loads(metrics_file.read_text())["evaluations"]
        # Evaluation k of 4 falls after k/4 of the epoch's 128 examples (to the nearest optimizer
        # step, whose examples are the effective batch).
        seen = [e["step"] * effective for e in steps]
        assert len(seen) == 4
        for k, examples in enumerate(seen, start=1):
            assert abs(examples - k * 128 / 4) <= effective
    assert len(sizes) > 1  # the sampler drew more than one effective batch size
    status = run_hpsearch("status", "--study", "batches", cwd=workdir)
    assert "effective batch" in status.stdout and "across trials" in status.stdout


def _metrics_artifact(storage, trial) -> str:
    from optuna.artifacts import get_all_artifact_meta

    (meta,) = [
        m for m in get_all_artifact_meta(trial, storage=storage) if m.filename.startswith("metrics")
    ]
    return meta.artifact_id


def test_a_resumed_trial_goes_on_counting_patience_from_the_checkpoint(tmp_path):
    import numpy as np
    import torch
    from transformers import EvalPrediction

    # Three evaluations (best 0.6 at the 2nd), with kept weights and predictions, then a save.
    best, _ = follow([0.5, 0.6, 0.55], patience=2)
    best.weights = {"classifier.weight": torch.arange(6.0).reshape(2, 3)}
    best.best_prediction = EvalPrediction(predictions=np.eye(3), label_ids=np.arange(3))
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    state = TrainerState(max_steps=100, global_step=3)
    directory = tmp_path / "checkpoint-3"
    directory.mkdir()
    best.on_save(args, state, TrainerControl())
    saved = json.loads(json.dumps(best.state()))  # as trainer_state.json holds it
    # A fresh callback (the re-run's) restored from the checkpoint has the same state ...
    primary = OptunaPruningCallback(None, "eval_accuracy", evals_per_epoch=1)
    primary.load_state(json.loads(json.dumps(primary.state()))["attributes"], directory)
    resumed = BestEvaluation(primary, maximize=True, patience=2)
    resumed.load_state(saved["attributes"], directory)
    assert (resumed.best_value, resumed.best_evaluation, resumed.since_best) == (0.6, 2, 1)
    assert torch.equal(resumed.weights["classifier.weight"], best.weights["classifier.weight"])
    assert np.array_equal(resumed.best_prediction.predictions, np.eye(3))
    # ... so one more evaluation without an improvement runs out its patience, as it would have.
    control = TrainerControl()
    state.global_step = 4
    primary.on_evaluate(args, state, control, metrics={"eval_accuracy": 0.55, "eval_loss": 1.0})
    resumed.on_evaluate(args, state, control)
    assert control.should_training_stop and resumed.stopped_early
