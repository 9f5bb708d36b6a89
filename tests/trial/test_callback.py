"""The Trainer callback against a real Optuna study: schedule, reports, pruning, divergence."""

from __future__ import annotations

import math

import optuna
import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from hpsearch.spec import PrunerSpec
from hpsearch.trial import OptunaPruningCallback
from hpsearch.trial.callback import evaluation_steps


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
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
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
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=2),
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


@pytest.mark.parametrize("evals_per_epoch", [1, 2, 3, 4])
@pytest.mark.parametrize("accumulation", [1, 2, 3, 4])
@pytest.mark.parametrize("batch_size", [8, 16, 32])
def test_rungs_sit_at_the_same_fraction_of_an_epoch_for_every_batch_size(
    batch_size, accumulation, evals_per_epoch
):
    for n_examples in (100, 999, 2000):
        batches = math.ceil(n_examples / batch_size)
        steps_per_epoch = math.ceil(batches / accumulation)  # Trainer's count
        for epochs in (1, 2, 3):
            max_steps = steps_per_epoch * epochs
            steps = evaluation_steps(max_steps, batches, accumulation, evals_per_epoch)
            assert steps == sorted(set(steps)) and steps[-1] == max_steps
            if steps_per_epoch >= evals_per_epoch:
                # Evaluation k comes after k / evals_per_epoch of an epoch, to the nearest step...
                assert len(steps) == evals_per_epoch * epochs
                for k, step in enumerate(steps, start=1):
                    assert abs(step - k * steps_per_epoch / evals_per_epoch) <= 0.5
                # ...so the first rung a pruner may act on is never before first_rung epochs, less
                # half a step.
                first = PrunerSpec(evals_per_epoch=evals_per_epoch).first_rung_evals
                assert steps[first - 1] >= 0.5 * steps_per_epoch - 0.5
            else:
                assert steps == list(range(1, max_steps + 1))  # fewer steps than evaluations: each


def test_the_schedule_matches_a_real_trainer_with_a_partial_accumulation(tmp_path):
    """63 batches, accumulation 4: Trainer makes 16 optimizer steps an epoch, the last of 3."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, Trainer

    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=50,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=1,
            intermediate_size=8,
        )
    )
    data = [
        {"input_ids": torch.randint(0, 50, (6,)), "labels": torch.tensor(i % 2)} for i in range(63)
    ]
    study = optuna.create_study(direction="minimize")
    callback = OptunaPruningCallback(study.ask(), "eval_loss", evals_per_epoch=2)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=4,
        num_train_epochs=2,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    Trainer(
        model=model, args=args, train_dataset=data, eval_dataset=data[:4], callbacks=[callback]
    ).train()
    assert callback.n_steps_planned == 32
    assert sorted(callback.eval_steps) == [8, 16, 24, 32]  # half-epochs of 16 steps
    assert [h["step"] for h in callback.history] == [8, 16, 24, 32]
