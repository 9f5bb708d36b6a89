"""A final training: one trial's configuration and seed trained again with no Optuna trial, on the
search's capped data or on all of it, evaluated on the search's eval set, and saved.

With the same seed, data and schedule it reproduces the trial (on a CPU, to the last digit); with
more data or epochs it is the model to use. It is one process on one device: a trial of a DDP group
is trained with the same effective batch through more accumulation (the data order differs: its
ranks each read a shard), and the record says the effective batch it had. Progress goes to a
function the caller gives (the CLI draws it); nothing here prints.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hpsearch.errors import HpsearchError, TrialFailed
from hpsearch.study import FinalPlan
from hpsearch.trial.augment import augmented_data
from hpsearch.trial.fit import examples_per_step, start_fit
from hpsearch.trial.load import Loaded, cache_dir

Report = Callable[[int, int, "dict[str, float] | None"], None]
"""Called with (optimizer steps done, steps planned, metrics of an evaluation just made or None)."""


class ProgressReporter(TrainerCallback):
    """Hands Trainer's progress to `report`: after each optimizer step, and each evaluation."""

    def __init__(self, report: Report):
        self.report = report

    def on_train_begin(self, args, state, control, **kwargs):
        self.report(0, state.max_steps, None)

    def on_step_end(self, args, state, control, **kwargs):
        self.report(state.global_step, state.max_steps, None)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        # After the evaluating callback, which added the task's derived metrics to this dict.
        numbers = {k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))}
        self.report(state.global_step, state.max_steps, numbers)


@dataclass(frozen=True)
class FinalResult:
    metric: str
    value: float
    """The objective of the evaluation that gives the value (the last, or the best under
    `objective.value: best`), on the search's eval set."""
    metrics: dict[str, float]
    interval: tuple[float, float] | None
    n_train_examples: int
    n_eval_examples: int
    n_steps: int
    n_evals: int
    epochs: float
    """Epochs trained, as Trainer counts them."""
    train_seconds: float
    effective_batch: int
    """Examples per optimizer step: a DDP trial's, through more accumulation (FinalPlan.values)."""
    history: list[dict[str, float]] = field(default_factory=list)


def train_final(
    plan: FinalPlan, loaded: Loaded, directory: Path, report: Report | None = None
) -> FinalResult:
    """Train `plan`'s configuration on `loaded` (its spec's data) and save the model and tokenizer
    in `directory`. A configuration that cannot train, or whose loss diverges, is an HpsearchError;
    then nothing is saved."""
    spec = plan.spec
    callbacks = (ProgressReporter(report),) if report is not None else ()
    with tempfile.TemporaryDirectory(prefix="hpsearch-final-") as scratch:
        try:
            data = augmented_data(
                spec,
                loaded.data,
                loaded.tokenizer,
                loaded.factory,
                plan.values,
                plan.seed,
                cache_dir(),
            )
            fitting = start_fit(
                spec,
                data,
                loaded.factory,
                loaded.tokenizer,
                plan.values,
                plan.seed,
                Path(scratch),
                trial=None,
                callbacks=callbacks,
            )
            fitting.train()
        except TrialFailed as e:
            raise HpsearchError(f"the final training of trial {plan.trial} failed: {e}") from None
    callback = fitting.callback
    if callback.divergence:
        raise HpsearchError(
            f"the final training of trial {plan.trial} failed: {callback.divergence}"
        )
    metric = spec.objective.eval_key
    if metric not in callback.last_metrics:
        raise HpsearchError(f"the final training of trial {plan.trial} made no evaluation")
    interval = fitting.interval(spec)
    fitting.keep_best_weights()
    fitting.save_deployable(directory)
    state = fitting.trainer.state
    return FinalResult(
        metric=metric,
        value=fitting.value,
        metrics=dict(fitting.metrics),
        interval=interval,
        n_train_examples=len(data.train),  # augmented rows included: what it trained on
        n_eval_examples=len(loaded.data.eval),
        n_steps=state.global_step,
        n_evals=callback.n_evals,
        epochs=float(state.epoch or 0.0),
        train_seconds=fitting.seconds,
        effective_batch=examples_per_step(fitting.trainer.args),
        history=list(callback.history),
    )


def final_record(plan: FinalPlan, result: FinalResult, **more: Any) -> dict[str, Any]:
    """The JSON-safe record of a final training, as the study keeps it
    (study.record_final_training)."""
    return {
        "trial": plan.trial,
        "seed": plan.seed,
        "full_data": plan.full_data,
        "epochs": round(result.epochs, 4),
        "epochs_asked": plan.epochs,
        "n_train_examples": result.n_train_examples,
        "n_eval_examples": result.n_eval_examples,
        "n_steps": result.n_steps,
        "effective_batch_size": result.effective_batch,
        "trial_devices": plan.trial_devices,
        "metric": result.metric,
        "value": round(result.value, 6),
        "trial_value": None if plan.trial_value is None else round(plan.trial_value, 6),
        "interval": None if result.interval is None else [round(x, 6) for x in result.interval],
        "metrics": {k: round(v, 6) for k, v in result.metrics.items()},
        "train_seconds": round(result.train_seconds, 3),
        **more,
    }
