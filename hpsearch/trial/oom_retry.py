"""Training a fitting, and training it again at half the batch when it runs out of GPU memory.

Out of GPU memory, a configuration trains once more at half the per-device batch and twice the
accumulation (the same effective batch), and records that it did (OOM_RETRY_ATTR). A resumed trial
that retries so starts over from step 0 (its checkpoint holds the old batch's data position) and
records that too (RESUME_DROPPED_ATTR).
"""

from __future__ import annotations

import gc
import os
import time

import torch

from hpsearch.errors import TrialFailed, first_line, is_hpsearch_bug
from hpsearch.trial.fake_oom import FAKE_REBUILD_OOM_ENV

OOM_RETRY_ATTR = "oom_retry"  # trial user attribute: {from_batch, to_batch, accumulation}


class OutOfMemoryRetry:
    """Fitting's training (trial/fit.py): its trainer, callbacks, `rebuild`, `oom_retry`,
    `resume_from`, `resume_dropped` and `seconds` are Fitting's fields."""

    def train(self) -> None:
        """Train; a failure to train (out of memory twice, an exception inside Trainer) is
        TrialFailed, except a bug of hpsearch (errors.is_hpsearch_bug), which escapes as it was
        raised. Out of memory once, it trains again at half the batch (`_retry_halved`)."""
        started = time.monotonic()
        try:
            if not self._train_fits():
                self._retry_halved()
        except TrialFailed:
            raise
        except Exception as e:  # failures are data: a combination that cannot train
            if is_hpsearch_bug(e):
                raise
            raise TrialFailed(f"{type(e).__name__}: {first_line(e)}") from None
        finally:
            self.seconds = time.monotonic() - started
            if torch.cuda.is_available():
                gc.collect()
                torch.cuda.empty_cache()

    def _train_fits(self) -> bool:
        """Train; False if it ran out of memory. The caller retries outside this `except`: its
        traceback's frames hold the failed step's tensors until it is left."""
        try:
            self.trainer.train(resume_from_checkpoint=self.resume_from and str(self.resume_from))
            return True
        except torch.OutOfMemoryError:
            return False

    def _retry_halved(self) -> None:
        """Out of memory: train again from the start at half the per-device batch and twice the
        accumulation (the same effective batch, so the same steps, evaluations and learning-rate
        schedule), the model rebuilt from its seed, once the failed model, optimizer and data
        loaders are freed. Recorded in OOM_RETRY_ATTR; out of memory again is TrialFailed, and so
        is a retry whose model or Trainer cannot be built (out of memory while building it, say),
        with both reasons. An odd batch (1 among them) cannot halve into the same effective batch,
        and a rank of a trial group cannot retry alone: TrialFailed at once."""
        args = self.trainer.args
        batch, accumulation = args.per_device_train_batch_size, args.gradient_accumulation_steps
        if args.world_size > 1 or self.rebuild is None:
            # A rank that retried alone would leave its group's collectives waiting for it.
            raise TrialFailed(f"out of memory (batch size {batch})")
        if batch % 2:
            raise TrialFailed(f"out of memory (batch size {batch}, which cannot be halved)")
        self.oom_retry = {
            "from_batch": batch,
            "to_batch": batch // 2,
            "accumulation": 2 * accumulation,
        }
        self._release()
        try:
            if os.environ.get(FAKE_REBUILD_OOM_ENV):
                raise torch.OutOfMemoryError(f"out of memory (faked by {FAKE_REBUILD_OOM_ENV})")
            retried = self.rebuild(
                {
                    "per_device_train_batch_size": batch // 2,
                    "gradient_accumulation_steps": 2 * accumulation,
                }
            )
        except Exception as e:
            if is_hpsearch_bug(e):
                raise
            reason = (
                str(e) if isinstance(e, TrialFailed) else f"{type(e).__name__}: {first_line(e)}"
            )
            raise TrialFailed(
                f"out of memory (batch size {batch}), and building its retry at batch size "
                f"{batch // 2} failed: {reason}"
            ) from None
        self.trainer, self.callback, self.best = retried.trainer, retried.callback, retried.best
        self.scored, self.unfreezing = retried.scored, retried.unfreezing
        # The checkpoint holds the old batch's data position: start over, and say so.
        self.resume_dropped = self.resume_from is not None
        self.resume_from = None
        if not self._train_fits():
            raise TrialFailed(
                f"out of memory (batch size {batch}, and {batch // 2} with accumulation "
                f"{2 * accumulation} on retry)"
            )

    def _release(self) -> None:
        """Drop this fitting's model, optimizer and data loaders (all the trainer's), and the
        evaluation's kept weights, and give their memory back."""
        self.trainer = self.callback = self.best = self.scored = self.unfreezing = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
