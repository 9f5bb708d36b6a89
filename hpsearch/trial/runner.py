"""One trial: sample parameters, fine-tune with Trainer, report each evaluation, prune, record.

A trial that cannot train (bad parameter combination, out of memory, NaN) is data: it ends FAIL with
its reason in the `fail_reason` user attribute and the study goes on.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import upload_artifact
from transformers import Trainer
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from hpsearch.errors import TrialFailed, first_line
from hpsearch.spec import StudySpec, split_params, suggest_params
from hpsearch.storage import BestModelKeeper, set_user_attrs
from hpsearch.study import EVAL_EXAMPLES_ATTR, FAIL_REASON_ATTR, INTERRUPTED, INTERVAL_ATTR
from hpsearch.trial.arguments import build_training_args
from hpsearch.trial.callback import OptunaPruningCallback
from hpsearch.trial.classes import transformers_class
from hpsearch.trial.data import PreparedData
from hpsearch.trial.interval import RememberLastEvaluation, bootstrap_interval
from hpsearch.trial.model import ModelFactory


@dataclass
class TrialRunner:
    """What every trial of a worker shares, built once per process (see workers/startup.py)."""

    spec: StudySpec
    data: PreparedData
    factory: ModelFactory
    tokenizer: Any
    artifact_store: Any
    best_model: BestModelKeeper
    device: str

    def __call__(self, trial: optuna.Trial) -> float:
        params = suggest_params(trial, self.spec.search_space)
        # A re-run (of an interrupted trial, or one lost with its worker) keeps the original seed.
        seed = trial.user_attrs.get("seed", self.spec.seed + trial.number)
        record_start(trial, seed, self.device)
        try:
            return self._train(trial, params, seed)
        except KeyboardInterrupt:
            trial.set_user_attr(FAIL_REASON_ATTR, INTERRUPTED)
            trial.study.enqueue_trial(params, user_attrs={"seed": seed, "rerun_of": trial.number})
            raise
        except TrialFailed as e:
            trial.set_user_attr(FAIL_REASON_ATTR, str(e))
            raise

    def _train(self, trial: optuna.Trial, params: dict[str, Any], seed: int) -> float:
        task = self.spec.task_spec
        settings = split_params({**self.spec.training, **params})
        callback = OptunaPruningCallback(
            trial, self.spec.objective.eval_key, self.spec.pruner.evals_per_epoch, task.derive_metrics
        )
        compute_metrics = task.compute_metrics(self.spec.dataset, self.tokenizer, self.data.label_names)
        scored = RememberLastEvaluation(compute_metrics) if compute_metrics is not None else None
        with tempfile.TemporaryDirectory(prefix="hpsearch-trial-") as scratch:
            try:
                args = build_training_args(settings.arguments, seed, Path(scratch), task)
                model = self.factory.build(seed, settings.knobs, settings.generation)
                trainer = transformers_class(task.trainer_class)(
                    model=model,
                    args=args,
                    train_dataset=self.data.train,
                    eval_dataset=self.data.eval,
                    processing_class=self.tokenizer,
                    data_collator=transformers_class(task.collator_class)(self.tokenizer, **task.collator_kwargs(model)),
                    compute_metrics=scored,
                    callbacks=[callback],
                )
            except Exception as e:  # noqa: BLE001 - TrainingArguments and Trainer refuse bad values in many types
                raise TrialFailed(f"invalid parameters: {first_line(e)}") from None
            # Progress is hpsearch's to show; Trainer's printer would interleave log dicts.
            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
            started = time.monotonic()
            try:
                trainer.train()
            except torch.OutOfMemoryError:
                raise TrialFailed(f"out of memory (batch size {args.per_device_train_batch_size})") from None
            except Exception as e:  # noqa: BLE001 - failures are data: a combination that cannot train
                raise TrialFailed(f"{type(e).__name__}: {first_line(e)}") from None
            finally:
                _record_cost(trial, trainer, callback, time.monotonic() - started,
                             self._interval(scored, callback, trainer))
                _upload_metrics(trial, callback, params, seed, self.artifact_store, Path(scratch))
                if torch.cuda.is_available():
                    gc.collect()
                    torch.cuda.empty_cache()
        if callback.divergence:
            raise TrialFailed(callback.divergence)
        if callback.pruned:
            raise optuna.TrialPruned(f"pruned at evaluation {callback.n_evals}")
        value = callback.last_metrics[self.spec.objective.eval_key]

        def save(directory: Path) -> None:
            trainer.model.save_pretrained(directory)
            self.tokenizer.save_pretrained(directory)

        self.best_model.offer(trial.study, trial.number, value, save)
        return value

    def _interval(self, scored: RememberLastEvaluation | None, callback: OptunaPruningCallback,
                  trainer: Trainer) -> dict[str, Any]:
        """The objective's bootstrap interval over the final evaluation, for a trial trained to its
        end (a pruned trial's model is not kept: its interval would tell nobody anything)."""
        task, metric = self.spec.task_spec, self.spec.objective.metric
        finished = (trainer.state.global_step == callback.n_steps_planned and not callback.pruned
                    and not callback.divergence and callback.n_evals > 0)
        if not finished or scored is None or scored.last is None or task.interval_rounds == 0:
            return {}
        try:
            low, high = bootstrap_interval(scored.compute, scored.last, metric, rounds=task.interval_rounds)
        except KeyError:  # a metric Trainer computes (the loss), not the task's compute_metrics
            return {}
        return {INTERVAL_ATTR: [round(low, 6), round(high, 6)], EVAL_EXAMPLES_ATTR: len(self.data.eval)}


def record_start(trial: optuna.Trial, seed: int, device: str) -> None:
    """Where the trial runs and with which seed, in one write."""
    set_user_attrs(trial, {"seed": seed, "host": socket.gethostname(), "pid": os.getpid(), "device": device})


def _record_cost(trial: optuna.Trial, trainer: Trainer, callback: OptunaPruningCallback, seconds: float,
                 interval: dict[str, Any]) -> None:
    cost = {
        "train_seconds": round(seconds, 3), "n_steps": trainer.state.global_step,
        "n_steps_planned": callback.n_steps_planned, "n_evals": callback.n_evals, **interval,
    }
    if callback.last_metrics:
        cost["metrics"] = {k: round(v, 6) for k, v in callback.last_metrics.items()}
    set_user_attrs(trial, cost)


def _upload_metrics(trial, callback: OptunaPruningCallback, params: dict, seed: int, store, scratch: Path) -> None:
    """Every evaluation of the trial as a JSON file attached to it: browsable in the dashboard."""
    record = {
        "trial": trial.number, "params": params, "seed": seed,
        "n_steps_planned": callback.n_steps_planned, "evaluations": callback.history,
    }
    path = scratch / f"metrics-trial-{trial.number}.json"
    path.write_text(json.dumps(record, indent=2))
    upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype="application/json")
