"""A trial's best evaluation so far: early stopping on it, and its weights kept for `value: best`.

Early stopping ends a trial whose objective has not improved by more than `min_delta` for
`patience` evaluations; the trial completes (it stopped itself, the pruner did not stop it). With
`objective.value: best` the trial's value is its best evaluation and its kept model the weights of
that evaluation: a copy of the parameters that train, held in memory (no checkpoint is written
for it; a trial's resume checkpoint, hpsearch.trial.checkpoint, carries the copy along).

A run's timeout with `budget.at_timeout: stop` ends a trial the same way, at its first evaluation
past the deadline: it completes with what it reached, so the run ends within one evaluation
interval of its timeout rather than a whole trial after it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from transformers import EvalPrediction, TrainerCallback

from hpsearch.trial.callback import OptunaPruningCallback
from hpsearch.trial.checkpoint import Resumable, checkpoint_directory

# In a resume checkpoint: the best evaluation's weights and predictions, which JSON cannot hold.
KEPT_FILE = "best_evaluation.pt"


class BestEvaluation(TrainerCallback, Resumable):
    """Follows the evaluations that `primary` (the trial's evaluating callback) makes; registered
    after it, so that it sees each evaluation's value once that callback has read and reported it.
    """

    def __init__(
        self,
        primary: OptunaPruningCallback,
        maximize: bool,
        patience: int | None = None,
        min_delta: float = 0.0,
        kept_weights: set[str] | None = None,
        scored=None,
        stop_at: float | None = None,
    ):
        self.primary = primary
        self.maximize = maximize
        self.patience = patience
        self.min_delta = min_delta
        # The parameters to copy at each new best: those that train at some point of the run (None:
        # keep no weights). The others never change.
        self.kept_weights = kept_weights
        self.scored = (
            scored  # RememberLastEvaluation: the best evaluation's predictions, for its interval
        )
        self.best_value: float | None = None
        self.best_evaluation = 0
        self.best_metrics: dict[str, float] = {}
        self.best_prediction = None
        self.since_best = 0
        self.stopped_early = False
        # The run's deadline (time.monotonic()) with `budget.at_timeout: stop`: the first
        # evaluation after it ends the trial, which completes with what it reached.
        self.stop_at = stop_at
        self.stopped_at_timeout = False
        self.weights: dict | None = None

    def attributes(self) -> dict:
        return {
            "best_value": self.best_value,
            "best_evaluation": self.best_evaluation,
            "best_metrics": self.best_metrics,
            "since_best": self.since_best,
        }

    def on_save(self, args, state, control, **kwargs):
        prediction = self.best_prediction
        kept = {
            "weights": self.weights,
            "prediction": None
            if prediction is None
            else (prediction.predictions, prediction.label_ids),
        }
        torch.save(kept, checkpoint_directory(args, state) / KEPT_FILE)

    def load_state(self, attributes: dict, directory: Path) -> None:
        super().load_state(attributes, directory)
        # Written by a worker of this study into its artifact store, which its workers trust as
        # they trust the storage; numpy predictions need more than weights_only allows.
        kept = torch.load(directory / KEPT_FILE, weights_only=False)
        self.weights = kept["weights"]
        if kept["prediction"] is not None:
            predictions, label_ids = kept["prediction"]
            self.best_prediction = EvalPrediction(predictions=predictions, label_ids=label_ids)

    def improves(self, value: float) -> bool:
        if self.best_value is None:
            return True
        gain = value - self.best_value if self.maximize else self.best_value - value
        return gain > self.min_delta

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        primary = self.primary
        if primary.pruned or primary.divergence or not primary.history:
            return
        self._track_best(primary, state, control, model)
        if (
            self.stop_at is not None
            and not control.should_training_stop
            and state.global_step < state.max_steps
            and time.monotonic() >= self.stop_at
        ):
            self.stopped_at_timeout = True
            control.should_training_stop = True

    def _track_best(self, primary, state, control, model) -> None:
        """The best evaluation so far (its weights, with `kept_weights`), and early stopping."""
        value = primary.last_metrics[primary.metric_key]
        if not math.isfinite(value):
            return
        if self.improves(value):
            self.best_value, self.best_evaluation, self.since_best = value, primary.n_evals, 0
            self.best_metrics = dict(primary.last_metrics)
            if self.scored is not None:
                self.best_prediction = self.scored.last
            if self.kept_weights is not None and model is not None:
                self.weights = {
                    name: p.detach().to("cpu", copy=True)
                    for name, p in model.named_parameters()
                    if name in self.kept_weights
                }
            return
        self.since_best += 1
        if (
            self.patience is not None
            and self.since_best >= self.patience
            and state.global_step < state.max_steps
        ):
            self.stopped_early = True
            control.should_training_stop = True

    def restore(self, model) -> None:
        """Put the best evaluation's weights back into `model` (the parameters that train: the
        others have not changed since)."""
        if self.weights is None:
            return
        parameters = dict(model.named_parameters())
        for name, saved in self.weights.items():
            parameters[name].data.copy_(saved.to(parameters[name].device))
