"""A trial's checkpoint at its evaluations, and its re-run's resume from it: a lost trial loses at
most one evaluation interval of training.

The checkpoint is Trainer's own (`control.should_save` after an evaluation: the weights, or a LoRA
model's adapter and head, the optimizer, the scheduler, the RNG states and the trainer state, which
carries every ExportableState callback's `state()`), moved into the artifact store by the storage's
TrialCheckpoint (hpsearch.storage.checkpoint). Resuming is Trainer's `resume_from_checkpoint` (it
restores all of the above and skips the batches already trained). hpsearch's callbacks are restored
in place by `restore_callbacks`, not by Trainer: Trainer's restore builds new callbacks from their
constructor's arguments, and ours hold live objects (the trial, the model's parameters, each other).
No checkpoint is written at the last evaluation, nor at one that stops the trial (pruned, stopped
early, diverged): nothing would resume from it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

TRAINER_STATE_FILE = "trainer_state.json"  # Trainer's file in a checkpoint (TRAINER_STATE_NAME)
RESUMED_FROM_STEP_ATTR = "resumed_from_step"
RESUMED_FROM_EVALUATION_ATTR = "resumed_from_evaluation"
RESUMED_FROM_TRIAL_ATTR = "resumed_from_trial"
# A resumed trial that ran out of memory trained again from step 0 at half the batch
# (trial/oom_retry.py).
RESUME_DROPPED_ATTR = "resume_dropped"


class Resumable(ExportableState):
    """A callback whose state a checkpoint carries: `attributes()` (JSON) goes into Trainer's
    trainer_state.json, and `load_state` puts it back into this very callback; anything that is
    not JSON (tensors) it writes into the checkpoint's directory itself, in its `on_save`."""

    def attributes(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state(self, attributes: dict[str, Any], directory: Path) -> None:
        for name, value in attributes.items():
            setattr(self, name, value)

    def state(self) -> dict:
        return {"args": {}, "attributes": self.attributes()}


def checkpoint_directory(args, state) -> Path:
    """Where Trainer's `_save_checkpoint` has just saved the checkpoint of `state.global_step`."""
    return Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"


class Checkpointing(TrainerCallback, Resumable):
    """Has Trainer save a checkpoint after every `every`-th evaluation, and hands it to `keeper`
    (a TrialCheckpoint) for the artifact store. Registered after the callbacks that may stop the
    trial at an evaluation, so that it sees their decision."""

    def __init__(self, keeper, every: int):
        self.keeper = keeper
        self.every = every
        self.n_evals = 0
        self.n_saves = 0  # by this process: what it cost this run
        self.seconds = 0.0
        self.n_bytes = 0
        self._started = 0.0

    @property
    def record(self) -> dict[str, Any]:
        """What checkpointing cost this run of the trial, recorded with its training cost."""
        return {
            "n_checkpoints": self.n_saves,
            "checkpoint_seconds": round(self.seconds, 3),
            "checkpoint_mb": round(self.n_bytes / 2**20, 1),
        }

    def attributes(self) -> dict[str, Any]:
        return {"n_evals": self.n_evals}

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:
            self.n_evals = 0  # training from the start: the out-of-memory retry of a resumed trial

    def on_step_end(self, args, state, control, **kwargs):
        upcoming = self.n_evals + 1
        if control.should_evaluate and state.global_step < state.max_steps:
            control.should_save = upcoming % self.every == 0

    def on_evaluate(self, args, state, control, **kwargs):
        self.n_evals += 1
        if control.should_training_stop:
            control.should_save = False  # pruned, stopped early or diverged: nothing resumes
        self._started = time.monotonic()  # Trainer saves next, if it saves

    def on_save(self, args, state, control, **kwargs):
        directory = checkpoint_directory(args, state)
        try:
            self.n_bytes = self.keeper.keep(directory, state.global_step, self.n_evals)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        self.n_saves += 1
        self.seconds += time.monotonic() - self._started


def restore_callbacks(trainer, directory: Path) -> None:
    """Put the state that the checkpoint in `directory` holds back into the trainer's Resumable
    callbacks (each found by its class name, as Trainer stores them)."""
    saved = json.loads((directory / TRAINER_STATE_FILE).read_text())["stateful_callbacks"]
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, Resumable) and type(callback).__name__ in saved:
            state = saved[type(callback).__name__]
            callback.load_state(state["attributes"], directory)


def resume_record(checkpoint) -> dict[str, int]:
    """The user attributes of a trial resumed from `checkpoint` (a storage Checkpoint)."""
    return {
        RESUMED_FROM_STEP_ATTR: checkpoint.step,
        RESUMED_FROM_EVALUATION_ATTR: checkpoint.evaluation,
        RESUMED_FROM_TRIAL_ATTR: checkpoint.trial,
    }
