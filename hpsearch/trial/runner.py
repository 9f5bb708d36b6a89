"""One trial: sample parameters, fine-tune with Trainer, report each evaluation, prune, record.

A trial that cannot train (bad parameter combination, out of memory, NaN) is data: it ends FAIL with
its reason in the `fail_reason` user attribute and the study goes on. One stopped by Ctrl-C ends
FAIL 'interrupted' with one re-run (same parameters and seed), queued by the storage in the same
transaction (hpsearch.storage.rerun). A bug of hpsearch met by a trial (errors.is_hpsearch_bug: a
KeyError raised in hpsearch's code, a failed import) is not data: the trial ends FAIL with reason
'bug in hpsearch' and the traceback in its `traceback` user attribute (it does not count toward
the budget), and TrialBug stops the worker, which would meet the bug in every trial.

A trial checkpoints after its evaluations (hpsearch.trial.checkpoint, `checkpoint:` in the spec)
and discards its checkpoint when it ends; a lost or interrupted one keeps it, and its re-run
resumes from it.

A trial that trains to its end uploads its model as its pending model when it may be the best, in
the background while it records its cost and metrics, and waits for it before returning its value;
the storage keeps it, or drops it, in the transaction that completes the trial
(hpsearch.storage.best_model).

A trial trained to its end measures what its model costs (hpsearch.trial.cost: latency, size,
parameters), recorded with its other costs; in a multi-objective study they may be objectives, and
the trial reports and is pruned on its first objective alone (hpsearch.study.quality_pruning).

In a trial group (several ranks per trial, hpsearch.trial.distributed) rank 0 runs the trial as
above and sends each configuration to the other ranks, which train it alongside (`follow`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import upload_artifact
from optuna.exceptions import UpdateFinishedTrialError

from hpsearch.errors import TrialFailed, describe_bug, is_hpsearch_bug
from hpsearch.spec import StudySpec, suggest_params
from hpsearch.storage import (
    RERUN_OF_ATTR,
    BestModelKeeper,
    TrialCheckpoint,
    rerun_when_failed,
    set_user_attrs,
)
from hpsearch.study import (
    BUG,
    EVAL_EXAMPLES_ATTR,
    FAIL_REASON_ATTR,
    INTERRUPTED,
    INTERVAL_ATTR,
    TRACEBACK_ATTR,
    WORLD_SIZE_ATTR,
    SamplerStart,
)
from hpsearch.study.quality_pruning import reporter_for
from hpsearch.trial.augment import augmented_data
from hpsearch.trial.callback import OptunaPruningCallback
from hpsearch.trial.checkpoint import Checkpointing, restore_callbacks, resume_record
from hpsearch.trial.cost import measure_cost
from hpsearch.trial.data import PreparedData
from hpsearch.trial.distributed import (
    GROUP_ATTR,
    RANKS_ATTR,
    FollowingTrial,
    Group,
    GroupBroken,
    LeadingTrial,
    disagreement,
    rank_outcome,
)
from hpsearch.trial.fit import Fitting, start_fit
from hpsearch.trial.load import cache_dir
from hpsearch.trial.model import ModelFactory
from hpsearch.trial.model_files import model_files
from hpsearch.trial.resident import ResidentModels

# A user attribute's value is one TEXT column (64 KiB on MySQL): the innermost frames are kept.
TRACEBACK_LIMIT = 16_000


@dataclass
class TrialRunner:
    """What every trial of a worker shares, built once per process (see workers/startup.py)."""

    spec: StudySpec
    models: ResidentModels
    """The tokenizer, data and model factory of each (model, max_length) a trial may draw."""
    artifact_store: Any
    best_model: BestModelKeeper
    device: str

    group: Group | None = None
    """The trial group this process is a rank of (gpus_per_trial), or None: it trains alone."""

    sampler_start: SamplerStart | None = None
    """This process's start number and sampler seed (study.seed_sampler), recorded on each trial."""

    stop_at: float | None = None
    """The run's deadline (time.monotonic()) with `budget.at_timeout: stop`: a trial running past
    it stops at its next evaluation and completes. A trial group's ranks would each read their own
    clock and could part at different evaluations, so a group trains its trial to the end."""

    @property
    def data(self) -> PreparedData:
        return self.models.latest.data

    @property
    def factory(self) -> ModelFactory:
        return self.models.latest.factory

    @property
    def tokenizer(self) -> Any:
        return self.models.latest.tokenizer

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        params = suggest_params(trial, self.spec.searched_params, self.spec.fixed_values)
        # A re-run (of an interrupted trial, or one lost with its worker) keeps the original seed.
        first = trial.user_attrs.get(RERUN_OF_ATTR, trial.number)
        seed = trial.user_attrs.get("seed", self.spec.seed + first)
        group_record = {}
        if self.group is not None:
            self.group.share((params, seed))
            group_record = {
                GROUP_ATTR: self.group.key,
                "rank_pids": self.group.gather(os.getpid()),
                WORLD_SIZE_ATTR: self.group.size,
            }
        start = self.sampler_start.attrs() if self.sampler_start is not None else {}
        record_start(trial, seed, self.device, {**start, **group_record})
        keeper = self._checkpoint(trial)
        ends = True  # False: the trial is lost or interrupted, and its re-run resumes from here
        try:
            return self._train(trial, params, seed, keeper)
        except KeyboardInterrupt:
            # Optuna's tell, which FAILs the trial next, records the reason and queues the re-run
            # in its transaction; if the stale-trial sweep ended the trial first, it adds nothing.
            ends = False
            rerun_when_failed(trial, INTERRUPTED)
            raise
        except TrialFailed as e:
            trial.set_user_attr(FAIL_REASON_ATTR, str(e))
            raise
        except optuna.TrialPruned:
            raise
        except Exception as e:
            if not is_hpsearch_bug(e):
                ends = False
                raise  # an outage or a lost resource: the worker's crash, and its restart
            bug = describe_bug(e, f"trial {trial.number}")
            set_user_attrs(
                trial,
                {FAIL_REASON_ATTR: BUG, TRACEBACK_ATTR: bug.traceback[-TRACEBACK_LIMIT:]},
            )
            raise bug from e
        finally:
            if keeper is not None and ends:
                keeper.discard()

    def _checkpoint(self, trial: optuna.Trial) -> TrialCheckpoint | None:
        """The trial's checkpoint keeper, or None: `checkpoint: false`, or a trial group (whose
        ranks would each need the checkpoint; a lost group trial starts again)."""
        if self.spec.checkpoint is None or self.group is not None:
            return None
        return TrialCheckpoint(trial, self.artifact_store)

    def follow(self) -> None:
        """On a rank other than 0: train each configuration rank 0 sends, until it sends none."""
        while (message := self.group.share()) is not None:
            params, seed = message
            self.group.gather(os.getpid())
            try:
                self._train(None, params, seed, None)
            except (TrialFailed, optuna.TrialPruned):
                pass  # rank 0 records how the trial ended
            except Exception as e:
                if is_hpsearch_bug(e):
                    raise describe_bug(e, f"rank {self.group.rank}'s trial") from e
                raise

    def _train(
        self,
        trial: optuna.Trial | None,
        params: dict[str, Any],
        seed: int,
        keeper: TrialCheckpoint | None,
    ) -> float | list[float]:
        """Train one configuration; `trial` is None on ranks other than 0 (which record nothing).
        With a `keeper`, it checkpoints, and a re-run resumes from its original's checkpoint."""
        group = self.group
        reported = reporter_for(trial, self.spec) if trial is not None else None
        reporter = (
            reported
            if group is None
            else LeadingTrial(reported, group)
            if trial is not None
            else FollowingTrial(group)
        )
        # The model and max_length the trial drew, when the spec searches them (spec/choice.py).
        spec = self.spec.for_trial(params)
        loaded = self.models.get(spec)
        # The trial's augmented training rows, when the spec augments (trial/augment.py).
        data = augmented_data(
            spec, loaded.data, loaded.tokenizer, loaded.factory, params, seed, cache_dir()
        )
        with tempfile.TemporaryDirectory(prefix="hpsearch-trial-") as scratch:
            resume_dir = Path(scratch) / "resume"
            resumed = keeper.take_over(resume_dir) if keeper is not None else None
            checkpointing = (Checkpointing(keeper, self.spec.checkpoint.every),) if keeper else ()
            fitting, error = None, None
            try:
                fitting = start_fit(
                    spec,
                    data,
                    loaded.factory,
                    loaded.tokenizer,
                    {**spec.training, **params},
                    seed,
                    Path(scratch),
                    reporter,
                    checkpointing,
                    self.stop_at if group is None else None,
                )
            except TrialFailed as e:
                error = str(e)
            if group is not None:
                error = group.first_error(error)  # one rank's refusal is every rank's
            if error is not None:
                raise TrialFailed(error)
            if resumed is not None:
                restore_callbacks(fitting.trainer, resume_dir)
                fitting.resume_from = resume_dir
                set_user_attrs(trial, resume_record(resumed))
            # A best model is written in the background while the records below are made, and
            # waited for at the block's end (hpsearch.storage.best_model).
            uploading = (
                self.best_model.uploading(trial) if trial is not None else contextlib.nullcontext()
            )
            cost: dict[str, Any] = {}
            with uploading as offer:
                try:
                    _train_in(fitting, group)
                    if trial is not None and _trained_to_end(fitting):
                        cost = measure_cost(fitting, self.data.eval)
                    if offer is not None and _trained_to_end(fitting):
                        fitting.keep_best_weights()
                        offer(
                            objective_values(self.spec, fitting, cost),
                            model_files(fitting.model, fitting.tokenizer),
                        )
                finally:
                    if trial is not None:
                        # A trial the stale-trial sweep ended while this process was stopped
                        # (SIGSTOP past the grace period) takes no more records: what stopped
                        # it goes on.
                        with contextlib.suppress(UpdateFinishedTrialError):
                            if fitting.released:  # its out-of-memory retry could not be built
                                set_user_attrs(trial, fitting.record)
                            else:
                                checkpoint_cost = checkpointing[0].record if checkpointing else {}
                                _record_cost(
                                    trial,
                                    fitting,
                                    {**self._interval(fitting), **checkpoint_cost, **cost},
                                )
                                _upload_metrics(
                                    trial,
                                    fitting.callback,
                                    params,
                                    seed,
                                    self.artifact_store,
                                    Path(scratch),
                                )
        if group is not None:
            outcomes = group.gather(rank_outcome(group, params, seed, fitting))
            if trial is not None:
                set_user_attrs(trial, {RANKS_ATTR: outcomes})
            problem = disagreement(outcomes)
            if problem:
                raise TrialFailed(problem)
        callback = fitting.callback
        if callback.divergence:
            raise TrialFailed(callback.divergence)
        if callback.pruned:
            raise optuna.TrialPruned(f"pruned at evaluation {callback.n_evals}")
        return objective_values(self.spec, fitting, cost)

    def _interval(self, fitting: Fitting) -> dict[str, Any]:
        """The objective's bootstrap interval over the final evaluation, for a trial trained to its
        end (a pruned trial's model is not kept: its interval would tell nobody anything)."""
        interval = fitting.interval(self.spec)
        if interval is None:
            return {}
        low, high = interval
        return {
            INTERVAL_ATTR: [round(low, 6), round(high, 6)],
            # The trial's own eval set (its model's tokens: a searched model may drop examples).
            EVAL_EXAMPLES_ATTR: self.spec.task_spec.count_examples(fitting.trainer.eval_dataset),
        }


def record_start(
    trial: optuna.Trial, seed: int, device: str, extra: dict[str, Any] | None = None
) -> None:
    """Where the trial runs and with which seeds (the trial's, and its sampler's with the start
    number of the process that sampled it, in `extra`), in one write."""
    set_user_attrs(
        trial,
        {
            "seed": seed,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": device,
            **(extra or {}),
        },
    )


def objective_values(spec: StudySpec, fitting: Fitting, cost: dict[str, Any]):
    """The trial's value, or in a multi-objective study its values: the first objective's (the
    pruned-on one), then each metric of the evaluation that gives it or each measured cost."""
    if not spec.is_multi_objective:
        return fitting.value
    measured = {**cost, "train_seconds": fitting.seconds}
    values = [fitting.value]
    for objective in spec.all_objectives[1:]:
        if objective.is_cost:
            values.append(float(measured[objective.metric]))
        else:
            values.append(float(fitting.metrics[objective.eval_key]))
    return values


def _train_in(fitting: Fitting, group: Group | None) -> None:
    """Train; in a group, a rank that fails breaks the group (its peers wait in a collective)."""
    try:
        fitting.train()
    except TrialFailed as e:
        if group is None:
            raise
        raise GroupBroken(f"rank {group.rank} of {group.size}: {e}") from None


def _trained_to_end(fitting: Fitting) -> bool:
    """Neither pruned nor diverged: a trial whose model may be the best (a group's ranks that
    disagree fail it later, which drops its uploaded model)."""
    return not fitting.callback.divergence and not fitting.callback.pruned


def _record_cost(trial: optuna.Trial, fitting: Fitting, interval: dict[str, Any]) -> None:
    callback = fitting.callback
    cost = {
        "train_seconds": round(fitting.seconds, 3),
        "n_steps": fitting.trainer.state.global_step,
        "n_steps_planned": callback.n_steps_planned,
        "n_evals": callback.n_evals,
        **interval,
        **fitting.record,
    }
    if fitting.metrics:
        cost["metrics"] = {k: round(v, 6) for k, v in fitting.metrics.items()}
    set_user_attrs(trial, cost)


def _upload_metrics(
    trial, callback: OptunaPruningCallback, params: dict, seed: int, store, scratch: Path
) -> None:
    """Every evaluation of the trial as a JSON file attached to it: browsable in the dashboard."""
    record = {
        "trial": trial.number,
        "params": params,
        "seed": seed,
        "n_steps_planned": callback.n_steps_planned,
        "evaluations": callback.history,
    }
    path = scratch / f"metrics-trial-{trial.number}.json"
    path.write_text(json.dumps(record, indent=2))
    upload_artifact(
        artifact_store=store, file_path=str(path), study_or_trial=trial, mimetype="application/json"
    )
