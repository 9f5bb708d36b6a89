"""The Trainer callback against a real Optuna study: schedule, reports, pruning, divergence."""

from __future__ import annotations

import math

import optuna
from transformers import TrainerControl, TrainerState, TrainingArguments

from hpsearch.trial import OptunaPruningCallback


def begin(callback, tmp_path, max_steps, steps_per_epoch, epochs=1.0):
    args = TrainingArguments(output_dir=str(tmp_path), num_train_epochs=epochs, report_to="none")
    state = TrainerState(max_steps=max_steps)
    callback.on_train_begin(args, state, TrainerControl(), train_dataloader=range(steps_per_epoch))
    return args, state


def evaluate(callback, args, state, value, step):
    control = TrainerControl()
    state.global_step = step
    callback.on_evaluate(args, state, control, metrics={"eval_accuracy": value, "eval_loss": 1.0})
    return control


def test_evaluations_spread_per_epoch(tmp_path):
    study = optuna.create_study(direction="maximize")
    callback = OptunaPruningCallback(study.ask(), "eval_accuracy", evals_per_epoch=2)
    args, state = begin(callback, tmp_path, max_steps=12, steps_per_epoch=6, epochs=2)
    # Two evaluations in each of two epochs, the last one on the final step.
    assert callback.eval_steps == {3, 6, 9, 12}
    control = TrainerControl()
    state.global_step = 3
    callback.on_step_end(args, state, control)
    assert control.should_evaluate
    control = TrainerControl()
    state.global_step = 4
    callback.on_step_end(args, state, control)
    assert not control.should_evaluate


def test_reports_each_evaluation_and_prunes_a_bad_trial(tmp_path):
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    )
    good = study.ask()
    callback = OptunaPruningCallback(good, "eval_accuracy", evals_per_epoch=3)
    args, state = begin(callback, tmp_path, max_steps=9, steps_per_epoch=9)
    for index, value in enumerate([0.5, 0.6, 0.7], start=1):
        control = evaluate(callback, args, state, value, step=index * 3)
        assert not control.should_training_stop
    study.tell(good, 0.7)
    # The first trial's three evaluations are stored, indexed 1, 2, 3.
    assert study.trials[0].intermediate_values == {1: 0.5, 2: 0.6, 3: 0.7}

    bad = study.ask()
    callback = OptunaPruningCallback(bad, "eval_accuracy", evals_per_epoch=3)
    args, state = begin(callback, tmp_path, max_steps=9, steps_per_epoch=9)
    control = evaluate(callback, args, state, 0.2, step=3)
    # Below the median at the first evaluation: training stops and the trial is marked pruned.
    assert control.should_training_stop
    assert callback.pruned
    assert callback.n_evals == 1


def test_nan_loss_stops_training_as_divergence(tmp_path):
    study = optuna.create_study(direction="maximize")
    callback = OptunaPruningCallback(study.ask(), "eval_accuracy", evals_per_epoch=1)
    args, state = begin(callback, tmp_path, max_steps=4, steps_per_epoch=4)
    control = TrainerControl()
    state.global_step = 2
    callback.on_log(args, state, control, logs={"loss": math.nan})
    assert control.should_training_stop
    assert callback.divergence == "training loss became nan at step 2"


def test_the_final_evaluation_never_prunes(tmp_path):
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=2)
    )
    good = study.ask()
    good.report(0.9, step=1)
    good.report(0.9, step=2)
    study.tell(good, 0.9)
    worse = study.ask()
    callback = OptunaPruningCallback(worse, "eval_accuracy", evals_per_epoch=2)
    args, state = begin(callback, tmp_path, max_steps=8, steps_per_epoch=8)
    evaluate(callback, args, state, 0.2, step=4)  # within the pruner's warm-up
    control = evaluate(callback, args, state, 0.1, step=8)
    # Below the median at its last evaluation, but trained to the end: kept as a complete trial.
    assert worse.should_prune() and not control.should_training_stop and not callback.pruned
    assert callback.n_evals == 2
