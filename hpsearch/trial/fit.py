"""Fine-tuning one configuration: its model, its Trainer and the evaluating callback, trained once.

Shared by a search trial (trial/runner.py, which reports to Optuna and records the trial) and by
`hpsearch train` (trial/final_training.py, which re-trains a chosen configuration with no Optuna
trial).
A process trains on one device or as one rank of a DDP group, never under DataParallel (a process
that sees several GPUs and is no rank is refused), and records the effective batch it really had.
Out of GPU memory it trains again at half the batch (trial/oom_retry.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from hpsearch.errors import HpsearchError, TrialFailed, first_line, is_hpsearch_bug
from hpsearch.spec import StudySpec, split_params
from hpsearch.study import (
    EARLY_STEPS_SAVED_ATTR,
    EFFECTIVE_BATCH_ATTR,
    STOPPED_AT_TIMEOUT_ATTR,
    STOPPED_EARLY_ATTR,
    effective_batch,
)
from hpsearch.trial.adapters import is_mergeable
from hpsearch.trial.arguments import build_training_args, make_collator
from hpsearch.trial.best_evaluation import BestEvaluation
from hpsearch.trial.callback import OptunaPruningCallback
from hpsearch.trial.checkpoint import RESUME_DROPPED_ATTR
from hpsearch.trial.classes import transformers_class
from hpsearch.trial.data import PreparedData
from hpsearch.trial.distill import distilling, student_knobs
from hpsearch.trial.fake_oom import fake_out_of_memory
from hpsearch.trial.gpu_memory import peak_gpu_memory, reset_peak_gpu_memory
from hpsearch.trial.interval import RememberLastEvaluation, bootstrap_interval
from hpsearch.trial.layers import GradualUnfreezing, set_layerwise_optimizer
from hpsearch.trial.lora import is_adapter, save_adapter
from hpsearch.trial.model import ModelFactory
from hpsearch.trial.oom_retry import OOM_RETRY_ATTR, OutOfMemoryRetry


@dataclass
class Fitting(OutOfMemoryRetry):
    """A configuration ready to train, then trained: `train()` once, then read or save results."""

    trainer: Trainer
    callback: OptunaPruningCallback
    best: BestEvaluation
    scored: RememberLastEvaluation | None
    tokenizer: Any
    value_of: str = "last"
    """objective.value: the trial's value is its last evaluation or its best one."""
    unfreezing: GradualUnfreezing | None = None
    interval_metric: str | None = None
    """The objective's metric when the task's compute_metrics returns it and its interval is
    computed (interval_rounds > 0); None otherwise."""
    seconds: float = 0.0
    rebuild: Callable[[dict[str, Any]], Fitting] | None = None
    """start_fit again with some values changed: the out-of-memory retry's smaller batch."""
    oom_retry: dict[str, int] | None = None
    """{from_batch, to_batch, accumulation} when it trained again after running out of memory."""
    resume_from: Path | None = None
    """A checkpoint to resume training from (hpsearch.trial.checkpoint), or None. The
    out-of-memory retry trains from the start."""
    resume_dropped: bool = False
    """It was to resume from a checkpoint, and the out-of-memory retry trained from step 0."""

    @property
    def released(self) -> bool:
        """Its model and Trainer were dropped for an out-of-memory retry that could not be built:
        nothing of its training is left to record but `oom_retry` and `seconds`."""
        return self.trainer is None

    @property
    def model(self):
        return self.trainer.model

    @property
    def finished(self) -> bool:
        """Trained to its last planned step (or stopped early, or at the run's timeout), not
        pruned nor diverged."""
        callback = self.callback
        ended = (
            self.trainer.state.global_step == callback.n_steps_planned
            or self.best.stopped_early
            or self.best.stopped_at_timeout
        )
        return ended and not callback.pruned and not callback.divergence and callback.n_evals > 0

    @property
    def value(self) -> float:
        """The objective of the trial: its last evaluation's, or its best one's."""
        if self.value_of == "best":
            return self.best.best_value
        return self.callback.last_metrics[self.callback.metric_key]

    @property
    def metrics(self) -> dict[str, float]:
        """The metrics of the evaluation that gives the value."""
        return self.best.best_metrics if self.value_of == "best" else self.callback.last_metrics

    @property
    def prediction(self):
        """The eval set's predictions behind the value (for its bootstrap interval), or None."""
        if self.scored is None:
            return None
        return self.best.best_prediction if self.value_of == "best" else self.scored.last

    @property
    def record(self) -> dict[str, Any]:
        """What the trial records of its training beyond steps and time: the effective batch size,
        early stopping, the best evaluation, the unfreezing schedule, the peak GPU memory; of a
        released one, its time and its out-of-memory retry."""
        if self.released:
            return {"train_seconds": round(self.seconds, 3), OOM_RETRY_ATTR: self.oom_retry}
        state = self.trainer.state
        record: dict[str, Any] = {EFFECTIVE_BATCH_ATTR: examples_per_step(self.trainer.args)}
        if self.best.patience is not None or self.value_of == "best":
            record["best_evaluation"] = self.best.best_evaluation
        if self.best.stopped_early:
            record[STOPPED_EARLY_ATTR] = True
            record[EARLY_STEPS_SAVED_ATTR] = self.callback.n_steps_planned - state.global_step
        if self.best.stopped_at_timeout:
            record[STOPPED_AT_TIMEOUT_ATTR] = {
                "evaluation": self.callback.n_evals,
                "steps_left": self.callback.n_steps_planned - state.global_step,
            }
        if self.unfreezing is not None:
            record["unfrozen_at_evaluations"] = self.unfreezing.unfrozen_at
        if self.oom_retry is not None:
            record[OOM_RETRY_ATTR] = self.oom_retry
        if self.resume_dropped:
            record[RESUME_DROPPED_ATTR] = True
        if is_adapter(self.model):
            trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            record["trainable_parameters"] = trainable
        return record | peak_gpu_memory()

    def keep_best_weights(self) -> None:
        """With value: best, put the best evaluation's weights back before the model is saved."""
        if self.value_of == "best":
            self.best.restore(self.model)

    def interval(self, spec: StudySpec) -> tuple[float, float] | None:
        """The objective's 95% bootstrap interval over the evaluation that gives the value, for a
        fitting trained to its end; None for a pruned one (its model is not kept) or an objective
        the task's compute_metrics does not return (the loss, which Trainer computes: decided
        from the task's `trainer_metrics` in `start_fit`, so a KeyError here is a bug)."""
        prediction = self.prediction
        if self.interval_metric is None or not self.finished or prediction is None:
            return None
        task = spec.task_spec
        return bootstrap_interval(
            self.scored.compute,
            prediction,
            self.interval_metric,
            rounds=task.interval_rounds,
            per_example=task.example_scores(self.scored.compute, prediction, self.interval_metric),
        )

    def save(self, directory: Path) -> None:
        """The trained model and its tokenizer, as `from_pretrained` reads them; of a LoRA model,
        the adapter and the head alone (deploy/merge merges them into the pretrained weights)."""
        if is_adapter(self.model):
            save_adapter(self.model, directory)
        else:
            self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)

    def save_deployable(self, directory: Path) -> None:
        """The model as `pipeline()` loads it: a LoRA or IA3 model's adapters merged into its
        weights (which ends this fitting's use of the adapters); virtual tokens (prompt and prefix
        tuning) cannot be merged, so they are saved as the adapter, which PEFT loads."""
        if is_adapter(self.model) and not is_mergeable(self.model):
            save_adapter(self.model, directory)
        else:
            model = self.model.merge_and_unload() if is_adapter(self.model) else self.model
            model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)


def examples_per_step(args) -> int:
    """The effective batch `args` train with: per device x every device of the step (DDP ranks,
    or the GPUs of one process, which Trainer's train_batch_size counts) x accumulation."""
    return effective_batch(
        args.per_device_train_batch_size,
        args.gradient_accumulation_steps,
        args.world_size,
        args.n_gpu,
    )


def start_fit(
    spec: StudySpec,
    data: PreparedData,
    factory: ModelFactory,
    tokenizer,
    values: dict[str, Any],
    seed: int,
    scratch: Path,
    trial: optuna.Trial | None = None,
    callbacks: tuple = (),
    stop_at: float | None = None,
) -> Fitting:
    """The model and Trainer for `values` (the spec's fixed settings and a trial's parameters);
    `trial` (None: no Optuna trial) gets every evaluation reported and may be pruned; past
    `stop_at` (time.monotonic()) it stops at its next evaluation and completes. Values that
    TrainingArguments, the model or Trainer refuse are TrialFailed ("invalid parameters: ..."); a
    bug of hpsearch (errors.is_hpsearch_bug) escapes as it was raised."""
    task = spec.task_spec
    settings = split_params(values)
    callback = OptunaPruningCallback(
        trial, spec.objective.eval_key, spec.pruner.evals_per_epoch, task.derive_metrics
    )
    compute_metrics = task.compute_metrics(
        spec.dataset, tokenizer, data.label_names, features=data.eval
    )
    scored = RememberLastEvaluation(compute_metrics) if compute_metrics is not None else None
    reset_peak_gpu_memory()
    try:
        args = build_training_args(settings.arguments, seed, scratch, task, spec=spec)
        lora = spec.peft.resolve(settings.peft) if spec.peft is not None else None
        distill = spec.distill.resolve(settings.distill) if spec.distill is not None else None
        model = factory.build(
            seed, student_knobs(distill, settings.knobs), settings.generation, lora
        )
        unfreezing = (
            GradualUnfreezing(model, settings.knobs["gradual_unfreezing"])
            if settings.knobs.get("gradual_unfreezing")
            else None
        )
        trained = {
            name
            for name, p in model.named_parameters()
            if p.requires_grad or (unfreezing is not None and id(p) in unfreezing.managed)
        }
        stopping = spec.early_stopping
        best = BestEvaluation(
            callback,
            maximize=spec.objective.direction == "maximize",
            patience=stopping.patience if stopping else None,
            min_delta=stopping.min_delta if stopping else 0.0,
            kept_weights=trained if spec.objective.value == "best" else None,
            scored=scored,
            stop_at=stop_at,
        )
        extra = [best] + ([unfreezing] if unfreezing is not None else [])
        trainer_class, collator = distilling(
            distill,
            transformers_class(task.trainer_class),
            make_collator(task, tokenizer, model, settings.arguments),
            tokenizer,
        )
        trainer = trainer_class(
            model=model,
            args=args,
            train_dataset=data.train,
            eval_dataset=data.eval,
            processing_class=tokenizer,
            data_collator=collator,
            compute_metrics=scored,
            callbacks=[callback, *extra, *callbacks, *fake_out_of_memory()],
        )
        if unfreezing is not None or "layer_lr_decay" in settings.knobs:
            set_layerwise_optimizer(trainer, settings.knobs.get("layer_lr_decay", 1.0), trained)
    except Exception as e:  # TrainingArguments and Trainer refuse bad values in many types
        if is_hpsearch_bug(e):
            raise
        raise TrialFailed(f"invalid parameters: {first_line(e)}") from None
    if trainer.args.n_gpu > 1:
        # Trainer would wrap the model in DataParallel: slow, and not the batch the spec says.
        # The launchers give a process one GPU or make it a DDP rank (hpsearch.workers.slots).
        raise HpsearchError(
            f"this process sees {trainer.args.n_gpu} GPUs and is no DDP rank; pin one with "
            "CUDA_VISIBLE_DEVICES, or train on several with --gpus-per-trial"
        )
    # Progress is hpsearch's to show; Trainer's printer would interleave log dicts.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return Fitting(
        trainer=trainer,
        callback=callback,
        best=best,
        scored=scored,
        tokenizer=tokenizer,
        value_of=spec.objective.value,
        unfreezing=unfreezing,
        interval_metric=_interval_metric(spec) if scored is not None else None,
        rebuild=lambda changed: start_fit(
            spec,
            data,
            factory,
            tokenizer,
            {**values, **changed},
            seed,
            scratch,
            trial,
            callbacks,
            stop_at,
        ),
    )


def _interval_metric(spec: StudySpec) -> str | None:
    """The objective's metric if the task's compute_metrics returns it (every metric of the task
    but those Trainer computes) and the task resamples its evaluations; else None."""
    task, metric = spec.task_spec, spec.objective.metric
    if task.interval_rounds == 0 or metric in task.trainer_metrics:
        return None
    return metric
