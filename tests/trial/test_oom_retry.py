"""Out of memory, a configuration trains once more at half the batch and twice the accumulation.

Real Trainer runs on the CPU; only the out-of-memory error is faked (HPSEARCH_TEST_OOM_ABOVE: a
step raises torch's OutOfMemoryError while the per-device batch is above the limit;
HPSEARCH_TEST_OOM_ON_REBUILD: so does building the retry's model and Trainer).
"""

from __future__ import annotations

import shutil

import optuna
import pytest

from hpsearch.errors import TrialFailed
from hpsearch.spec import parse_spec
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import EFFECTIVE_BATCH_ATTR, FAIL_REASON_ATTR
from hpsearch.trial.checkpoint import RESUME_DROPPED_ATTR, Checkpointing, restore_callbacks
from hpsearch.trial.fake_oom import FAKE_OOM_ENV, FAKE_REBUILD_OOM_ENV
from hpsearch.trial.fit import OOM_RETRY_ATTR, start_fit
from hpsearch.workers import build_runner

pytestmark = pytest.mark.slow

PARAMS = {"learning_rate": 2e-4, "per_device_train_batch_size": 32}


@pytest.fixture
def runner_and_study(tiny_spec, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("HPSEARCH_CACHE", str(cache_dir))
    spec = parse_spec(tiny_spec, "t")
    url = resolve_storage_url(f"sqlite:///{tmp_path / 'hp.db'}")
    runner = build_runner(spec, url, "oom")
    study = optuna.create_study(
        storage=open_storage(url),
        study_name="oom",
        direction="maximize",
        pruner=optuna.pruners.NopPruner(),
    )
    return runner, study


def run_enqueued(study, runner, params):
    study.enqueue_trial(params)
    study.optimize(runner, n_trials=1, catch=(TrialFailed,))
    return study.trials[-1]


def fit(runner, tmp_path, callbacks=(), resume_from=None, **values):
    fitting = start_fit(
        runner.spec,
        runner.data,
        runner.factory,
        runner.tokenizer,
        {**runner.spec.training, **values},
        seed=7,
        scratch=tmp_path,
        callbacks=callbacks,
    )
    if resume_from is not None:
        restore_callbacks(fitting.trainer, resume_from)
        fitting.resume_from = resume_from
    fitting.train()
    return fitting


def measured(history: list[dict]) -> list[dict]:
    """Each evaluation's step and metrics, without its timings."""
    timed = ("_runtime", "_per_second")
    return [{k: v for k, v in e.items() if not k.endswith(timed)} for e in history]


def test_a_trial_out_of_memory_retries_at_half_the_batch(runner_and_study, monkeypatch):
    runner, study = runner_and_study
    whole = run_enqueued(study, runner, PARAMS)
    monkeypatch.setenv(FAKE_OOM_ENV, "16")
    retried = run_enqueued(study, runner, PARAMS)
    # Batch 32 ran out of memory; 16 with accumulation 2 trained to the end, and says so.
    assert retried.state == optuna.trial.TrialState.COMPLETE
    assert retried.user_attrs[OOM_RETRY_ATTR] == {
        "from_batch": 32,
        "to_batch": 16,
        "accumulation": 2,
    }
    # The same effective batch, so the same optimizer steps and evaluations as at batch 32.
    assert retried.user_attrs[EFFECTIVE_BATCH_ATTR] == whole.user_attrs[EFFECTIVE_BATCH_ATTR] == 32
    assert retried.user_attrs["n_steps"] == whole.user_attrs["n_steps"] == 2  # 64 samples / 32
    assert retried.intermediate_values.keys() == whole.intermediate_values.keys()
    assert OOM_RETRY_ATTR not in whole.user_attrs


def test_a_retried_fitting_trains_as_one_started_at_the_smaller_batch(
    runner_and_study, tmp_path, monkeypatch
):
    runner, _ = runner_and_study
    smaller = {**PARAMS, "per_device_train_batch_size": 16, "gradient_accumulation_steps": 2}
    direct = fit(runner, tmp_path, **smaller)
    monkeypatch.setenv(FAKE_OOM_ENV, "16")
    retried = fit(runner, tmp_path, **PARAMS)
    # The model rebuilt from the same seed, the same data order: the same evaluations exactly.
    assert retried.oom_retry == {"from_batch": 32, "to_batch": 16, "accumulation": 2}
    assert measured(retried.callback.history) == measured(direct.callback.history)
    assert retried.trainer.args.gradient_accumulation_steps == 2


def test_out_of_memory_again_fails_the_trial_with_both_batches(runner_and_study, monkeypatch):
    runner, study = runner_and_study
    monkeypatch.setenv(FAKE_OOM_ENV, "8")
    failed = run_enqueued(study, runner, PARAMS)
    # 32, then 16 with accumulation 2: out of memory twice is the trial's reason, retry recorded.
    assert failed.state == optuna.trial.TrialState.FAIL
    assert failed.user_attrs[FAIL_REASON_ATTR] == (
        "out of memory (batch size 32, and 16 with accumulation 2 on retry)"
    )
    assert failed.user_attrs[OOM_RETRY_ATTR]["to_batch"] == 16


@pytest.mark.parametrize("batch", [1, 5])
def test_a_batch_that_cannot_halve_fails_at_once(runner_and_study, tmp_path, monkeypatch, batch):
    runner, _ = runner_and_study
    monkeypatch.setenv(FAKE_OOM_ENV, "0")
    # Batch 1 has no half; 5 has none that keeps the effective batch: no retry, the reason says.
    with pytest.raises(TrialFailed) as failed:
        fit(runner, tmp_path, learning_rate=2e-4, per_device_train_batch_size=batch)
    assert str(failed.value) == f"out of memory (batch size {batch}, which cannot be halved)"


def test_a_retry_that_cannot_be_built_fails_the_trial_with_both_reasons(
    runner_and_study, monkeypatch
):
    runner, study = runner_and_study
    monkeypatch.setenv(FAKE_OOM_ENV, "16")
    monkeypatch.setenv(FAKE_REBUILD_OOM_ENV, "1")
    # Batch 32 ran out of memory, and so did building the model and Trainer at 16: the trial fails
    # with both reasons (data, not a bug of hpsearch: the worker goes on with the next trial).
    failed = run_enqueued(study, runner, PARAMS)
    assert failed.state == optuna.trial.TrialState.FAIL
    assert failed.user_attrs[FAIL_REASON_ATTR] == (
        "out of memory (batch size 32), and building its retry at batch size 16 failed: "
        "OutOfMemoryError: out of memory (faked by HPSEARCH_TEST_OOM_ON_REBUILD)"
    )
    assert failed.user_attrs[OOM_RETRY_ATTR] == {
        "from_batch": 32,
        "to_batch": 16,
        "accumulation": 2,
    }
    assert "traceback" not in failed.user_attrs
    monkeypatch.delenv(FAKE_OOM_ENV)
    assert run_enqueued(study, runner, PARAMS).state == optuna.trial.TrialState.COMPLETE


class CopyingKeeper:
    """Keeps a copy of each checkpoint Checkpointing hands over, by evaluation (a search trial's
    TrialCheckpoint moves it into the artifact store; `start_fit` here has no trial)."""

    def __init__(self, directory):
        self.directory = directory
        self.evaluations: list[int] = []

    def keep(self, directory, step: int, evaluation: int) -> int:
        shutil.copytree(directory, self.directory / f"evaluation-{evaluation}")
        self.evaluations.append(evaluation)
        return 0


def test_a_resumed_fitting_out_of_memory_starts_over_and_says_so(
    runner_and_study, tmp_path, monkeypatch
):
    runner, _ = runner_and_study
    # 64 examples at batch 32: 2 steps and 2 evaluations; a checkpoint after the 1st.
    first = CopyingKeeper(tmp_path / "first")
    fit(runner, tmp_path / "a", callbacks=(Checkpointing(first, every=1),), **PARAMS)
    assert first.evaluations == [1]
    monkeypatch.setenv(FAKE_OOM_ENV, "16")
    second = CopyingKeeper(tmp_path / "second")
    resumed = fit(
        runner,
        tmp_path / "b",
        callbacks=(Checkpointing(second, every=1),),
        resume_from=tmp_path / "first" / "evaluation-1",
        **PARAMS,
    )
    # Out of memory at batch 32, it trained at 16 from step 0 (the checkpoint's data position is
    # the old batch's), recorded that it dropped the resume, and trained as a fitting started at 16.
    assert resumed.record[RESUME_DROPPED_ATTR] is True
    assert resumed.record[OOM_RETRY_ATTR]["to_batch"] == 16
    monkeypatch.delenv(FAKE_OOM_ENV)
    smaller = {**PARAMS, "per_device_train_batch_size": 16, "gradient_accumulation_steps": 2}
    direct = fit(runner, tmp_path / "c", **smaller)
    assert measured(resumed.callback.history) == measured(direct.callback.history)
    assert RESUME_DROPPED_ATTR not in direct.record
    # Its checkpoints count evaluations from the start again: the next one is of evaluation 1.
    assert second.evaluations == [1]
