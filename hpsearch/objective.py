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
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from hpsearch.artifact import keep_if_best
from hpsearch.budget import FAIL_REASON_ATTR, INTERRUPTED
from hpsearch.data import PreparedData
from hpsearch.metrics import make_compute_metrics
from hpsearch.modeling import ModelFactory
from hpsearch.precision import auto_precision, precision_name
from hpsearch.pruning import OptunaPruningCallback
from hpsearch.search_space import split_params, suggest_params
from hpsearch.spec import StudySpec
from hpsearch.storage import set_user_attrs

# TrainingArguments that hpsearch sets itself; a spec may not search or fix them.
CONTROLLED_ARGS = frozenset({
    "output_dir", "eval_strategy", "eval_steps", "save_strategy", "save_steps", "save_total_limit",
    "logging_strategy", "logging_steps", "logging_dir", "logging_nan_inf_filter", "report_to",
    "disable_tqdm", "seed", "do_train", "do_eval", "load_best_model_at_end", "metric_for_best_model",
    "greater_is_better", "push_to_hub", "hub_model_id", "run_name", "eval_on_start",
    "remove_unused_columns", "label_names",
})
# Not train_sampling_strategy="group_by_length": it made steps 1.5x faster on the default study, but
# its batches of one length cost 3-6 points of accuracy after an epoch (BENCHMARKS.md).
DEFAULT_ARGS = {"per_device_eval_batch_size": 64}


class TrialFailed(Exception):
    """Raised to end a trial FAIL with a recorded reason; the study catches it and goes on."""


@dataclass
class TrialRunner:
    """What every trial of a worker shares, built once per process (see worker.py)."""

    spec: StudySpec
    data: PreparedData
    factory: ModelFactory
    tokenizer: Any
    artifact_store: Any
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
        arg_values, knobs = split_params({**self.spec.training, **params})
        callback = OptunaPruningCallback(
            trial, self.spec.objective.eval_key, self.spec.pruner.evals_per_epoch
        )
        with tempfile.TemporaryDirectory(prefix="hpsearch-trial-") as scratch:
            try:
                args = build_training_args(arg_values, seed, Path(scratch))
                trainer = Trainer(
                    model=self.factory.build(seed, knobs),
                    args=args,
                    train_dataset=self.data.train,
                    eval_dataset=self.data.eval,
                    processing_class=self.tokenizer,
                    data_collator=DataCollatorWithPadding(self.tokenizer),
                    compute_metrics=make_compute_metrics(len(self.data.label_names)),
                    callbacks=[callback],
                )
            except Exception as e:  # noqa: BLE001 - TrainingArguments and Trainer refuse bad values in many types
                raise TrialFailed(f"invalid parameters: {_first_line(e)}") from None
            # Progress is hpsearch's to show; Trainer's printer would interleave log dicts.
            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
            started = time.monotonic()
            try:
                trainer.train()
            except torch.OutOfMemoryError:
                raise TrialFailed(f"out of memory (batch size {args.per_device_train_batch_size})") from None
            except Exception as e:  # noqa: BLE001 - failures are data: a combination that cannot train
                raise TrialFailed(f"{type(e).__name__}: {_first_line(e)}") from None
            finally:
                _record_cost(trial, trainer, callback, time.monotonic() - started)
                _upload_metrics(trial, callback, params, seed, self.artifact_store, Path(scratch))
                if torch.cuda.is_available():
                    gc.collect()
                    torch.cuda.empty_cache()
        if callback.divergence:
            raise TrialFailed(callback.divergence)
        if callback.pruned:
            raise optuna.TrialPruned(f"pruned at evaluation {callback.n_evals}")
        value = callback.last_metrics[self.spec.objective.eval_key]
        keep_if_best(trial, value, trainer.model, self.tokenizer, self.artifact_store)
        return value


def build_training_args(values: dict[str, Any], seed: int, output_dir: Path) -> TrainingArguments:
    return TrainingArguments(
        **{**DEFAULT_ARGS, **auto_precision(values), **values},
        output_dir=str(output_dir),
        seed=seed,
        # Evaluation and logging are driven by OptunaPruningCallback; nothing is written to disk.
        eval_strategy="no",
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_nan_inf_filter=False,
    )


def record_start(trial: optuna.Trial, seed: int, device: str) -> None:
    """Where the trial runs and with which seed, in one write."""
    set_user_attrs(trial, {"seed": seed, "host": socket.gethostname(), "pid": os.getpid(), "device": device})


def _record_cost(trial: optuna.Trial, trainer: Trainer, callback: OptunaPruningCallback, seconds: float) -> None:
    cost = {
        "train_seconds": round(seconds, 3), "n_steps": trainer.state.global_step,
        "n_steps_planned": callback.n_steps_planned, "n_evals": callback.n_evals,
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


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def describe_device(training: dict[str, Any]) -> str:
    """Where and in what precision this worker's trials train, e.g. "cpu (2 threads, bf16)"."""
    precision = precision_name({**auto_precision(training), **training})
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}, {precision})"
    return f"cpu ({torch.get_num_threads()} threads, {precision})"
