"""The bridge between Trainer and an Optuna trial: evaluate on a schedule, report, prune, catch NaN.

Evaluations are spread evenly over the run, `evals_per_epoch` per epoch, the last one on the final
step, and reported with step = their index (1, 2, ...). Indexing by evaluation rather than optimizer
step keeps the pruner's rungs comparable between trials of different batch sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna
from transformers import TrainerCallback

from hpsearch.trial.checkpoint import Resumable


class TrialDiverged(Exception):
    """The training loss or the metric stopped being a finite number."""


def evaluation_steps(
    max_steps: int, batches_per_epoch: int, accumulation: int, evals_per_epoch: int
) -> list[int]:
    """The optimizer steps after which a trial evaluates: `evals_per_epoch` per epoch, evenly
    spaced, the last on the final step. Evaluation k falls at k / evals_per_epoch of an epoch (to
    the nearest step), whatever the batch size and accumulation: the rungs of every trial sit at the
    same fraction of the data seen."""
    # As Trainer counts them: a last, partial accumulation still makes an optimizer step.
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / accumulation))
    n_evals = max(1, min(math.ceil(evals_per_epoch * max_steps / steps_per_epoch), max_steps))
    return [round(k * max_steps / n_evals) for k in range(1, n_evals + 1)]


class OptunaPruningCallback(TrainerCallback, Resumable):
    def __init__(
        self,
        trial: optuna.Trial | None,
        metric_key: str,
        evals_per_epoch: int,
        derive_metrics: Callable[[dict], dict] | None = None,
    ):
        self.trial = trial  # None: nothing reported, nothing pruned (a final training)
        self.metric_key = metric_key
        self.evals_per_epoch = evals_per_epoch
        # The task's metrics computed from Trainer's own (perplexity from the eval loss).
        self.derive_metrics = derive_metrics
        self.eval_steps: set[int] = set()
        self.n_evals = 0
        self.n_steps_planned = 0
        self.pruned = False
        self.divergence: str | None = None
        self.last_metrics: dict[str, float] = {}
        self.history: list[dict[str, float]] = []  # every evaluation, for the trial's metrics file

    def attributes(self) -> dict:
        """What a resumed trial needs to go on: its evaluations so far (the schedule is computed
        again at the start of training)."""
        return {
            "n_evals": self.n_evals,
            "last_metrics": self.last_metrics,
            "history": self.history,
        }

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        self.n_steps_planned = state.max_steps
        self.eval_steps = set(
            evaluation_steps(
                state.max_steps,
                len(train_dataloader),
                args.gradient_accumulation_steps,
                self.evals_per_epoch,
            )
        )

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.eval_steps:
            control.should_evaluate = True
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.divergence = f"training loss became {loss} at step {state.global_step}"
            control.should_training_stop = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics if metrics is not None else {}
        if self.derive_metrics is not None:
            metrics.update(self.derive_metrics(metrics))  # the dict Trainer.evaluate returns, too
        if self.metric_key not in metrics:
            raise KeyError(
                f"evaluation returned no {self.metric_key}; it returned {sorted(metrics)}"
            )
        value = float(metrics[self.metric_key])
        self.n_evals += 1
        self.last_metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self.history.append(
            {"evaluation": self.n_evals, "step": state.global_step, **self.last_metrics}
        )
        for key in (self.metric_key, "eval_loss"):
            if not math.isfinite(metrics.get(key, 0.0)):
                self.divergence = f"{key} became {metrics[key]} at evaluation {self.n_evals}"
                control.should_training_stop = True
                return
        if self.trial is None:
            return
        self.trial.report(value, step=self.n_evals)
        # At the final evaluation the training is done: pruning would save nothing and only discard
        # a finished model, so the trial completes whatever the pruner says.
        if state.global_step < state.max_steps and self.trial.should_prune():
            self.pruned = True
            control.should_training_stop = True
