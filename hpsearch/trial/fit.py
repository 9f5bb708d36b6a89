"""Fine-tuning one configuration: its model, its Trainer and the callback that evaluates, trained once.

Shared by a search trial (trial/runner.py, which reports to Optuna and records the trial) and by
`hpsearch train` (trial/final.py, which re-trains a chosen configuration with no Optuna trial).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from hpsearch.errors import TrialFailed, first_line
from hpsearch.spec import StudySpec, split_params
from hpsearch.trial.arguments import build_training_args
from hpsearch.trial.callback import OptunaPruningCallback
from hpsearch.trial.classes import transformers_class
from hpsearch.trial.data import PreparedData
from hpsearch.trial.interval import RememberLastEvaluation, bootstrap_interval
from hpsearch.trial.model import ModelFactory


@dataclass
class Fitting:
    """A configuration ready to train, then trained: `train()` once, then read or save the result."""

    trainer: Trainer
    callback: OptunaPruningCallback
    scored: RememberLastEvaluation | None
    tokenizer: Any
    seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self):
        return self.trainer.model

    @property
    def finished(self) -> bool:
        """Trained to its last planned step, not pruned nor diverged."""
        callback = self.callback
        return (self.trainer.state.global_step == callback.n_steps_planned and not callback.pruned
                and not callback.divergence and callback.n_evals > 0)

    def train(self) -> None:
        """Train; a failure to train (out of memory, an exception inside Trainer) is TrialFailed."""
        started = time.monotonic()
        try:
            self.trainer.train()
        except torch.OutOfMemoryError:
            raise TrialFailed(
                f"out of memory (batch size {self.trainer.args.per_device_train_batch_size})") from None
        except Exception as e:  # noqa: BLE001 - failures are data: a combination that cannot train
            raise TrialFailed(f"{type(e).__name__}: {first_line(e)}") from None
        finally:
            self.seconds = time.monotonic() - started
            if torch.cuda.is_available():
                gc.collect()
                torch.cuda.empty_cache()

    def interval(self, spec: StudySpec) -> tuple[float, float] | None:
        """The objective's 95% bootstrap interval over the last evaluation, for a fitting trained to
        its end; None for a pruned one (its model is not kept) or an objective the task's metrics
        do not compute (the loss, which Trainer does)."""
        task, scored = spec.task_spec, self.scored
        if not self.finished or scored is None or scored.last is None or task.interval_rounds == 0:
            return None
        try:
            return bootstrap_interval(scored.compute, scored.last, spec.objective.metric, rounds=task.interval_rounds)
        except KeyError:
            return None

    def save(self, directory: Path) -> None:
        """The trained model and its tokenizer, as `from_pretrained` reads them."""
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)


def start_fit(spec: StudySpec, data: PreparedData, factory: ModelFactory, tokenizer, values: dict[str, Any],
              seed: int, scratch: Path, trial: optuna.Trial | None = None, callbacks: tuple = ()) -> Fitting:
    """The model and Trainer for `values` (the spec's fixed settings and a trial's parameters);
    `trial` (None: no Optuna trial) gets every evaluation reported and may be pruned. Values that
    TrainingArguments, the model or Trainer refuse are TrialFailed ("invalid parameters: ...")."""
    task = spec.task_spec
    settings = split_params(values)
    callback = OptunaPruningCallback(trial, spec.objective.eval_key, spec.pruner.evals_per_epoch,
                                     task.derive_metrics)
    compute_metrics = task.compute_metrics(spec.dataset, tokenizer, data.label_names)
    scored = RememberLastEvaluation(compute_metrics) if compute_metrics is not None else None
    try:
        args = build_training_args(settings.arguments, seed, scratch, task)
        model = factory.build(seed, settings.knobs, settings.generation)
        trainer = transformers_class(task.trainer_class)(
            model=model,
            args=args,
            train_dataset=data.train,
            eval_dataset=data.eval,
            processing_class=tokenizer,
            data_collator=transformers_class(task.collator_class)(tokenizer, **task.collator_kwargs(model)),
            compute_metrics=scored,
            callbacks=[callback, *callbacks],
        )
    except Exception as e:  # noqa: BLE001 - TrainingArguments and Trainer refuse bad values in many types
        raise TrialFailed(f"invalid parameters: {first_line(e)}") from None
    # Progress is hpsearch's to show; Trainer's printer would interleave log dicts.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return Fitting(trainer=trainer, callback=callback, scored=scored, tokenizer=tokenizer)
