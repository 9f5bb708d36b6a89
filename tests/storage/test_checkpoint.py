"""A running trial's checkpoint in the artifact store: one at a time, taken over by the re-run of a
lost trial with the reports it had made, never left behind by a save cut short nor by a trial lost
for good, and left alone by a worker whose trial was ended by someone else. On every database of
tests/storage/conftest.py."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import fail_stale_trials

from hpsearch.storage import LOST, TrialCheckpoint, fail_for_rerun, open_artifact_store
from hpsearch.storage.checkpoint import ARTIFACT_PREFIX, CHECKPOINT_ATTR, latest_checkpoint
from tests.storage.test_rerun import frozen, open_study, start_trial_with_history, study_name

__all__ = ["study_name"]  # the fixture, used by name


@pytest.fixture
def store(tmp_path, monkeypatch):
    # The store the storage removes abandoned checkpoints from, on a database server too.
    monkeypatch.setenv("HPSEARCH_ARTIFACTS", str(tmp_path / "artifacts"))
    return open_artifact_store(tmp_path / "artifacts")


def saved_checkpoint(tmp_path, step: int) -> Path:
    """A directory as Trainer saves a checkpoint, with one file telling its step."""
    directory = tmp_path / f"saved-{step}" / f"checkpoint-{step}"
    directory.mkdir(parents=True)
    (directory / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    return directory


def files_in(tmp_path) -> set[str]:
    return {
        p.name for p in (tmp_path / "artifacts").iterdir() if p.name.startswith(ARTIFACT_PREFIX)
    }


def test_one_checkpoint_at_a_time_and_none_once_the_trial_ends(url, study_name, store, tmp_path):
    study = open_study(url, study_name)
    trial = start_trial_with_history(study)
    keeper = TrialCheckpoint(trial, store)
    keeper.keep(saved_checkpoint(tmp_path, 4), step=4, evaluation=1)
    first = latest_checkpoint(frozen(study, trial))
    keeper.keep(saved_checkpoint(tmp_path, 8), step=8, evaluation=2)
    latest = latest_checkpoint(frozen(study, trial))
    # The pointer names the latest save; the one it replaced is gone from the store.
    assert (latest.step, latest.evaluation, latest.trial) == (8, 2, trial.number)
    assert files_in(tmp_path) == {latest.artifact_id} and first.artifact_id != latest.artifact_id
    # The pruner's rungs as they stood at the save travel with it.
    assert latest.rungs == {"completed_rung_0": 0.5}
    keeper.discard()
    # A trial that ends leaves no checkpoint, and no pointer to one.
    assert files_in(tmp_path) == set()
    assert latest_checkpoint(frozen(study, trial)) is None


def test_a_rerun_takes_over_the_checkpoint_with_the_reports_up_to_it(
    url, study_name, store, tmp_path
):
    study = open_study(url, study_name)
    dead = start_trial_with_history(study)  # reported 0.5 at evaluation 1
    keeper = TrialCheckpoint(dead, store)
    keeper.keep(saved_checkpoint(tmp_path, 8), step=8, evaluation=1)
    dead.report(0.6, 2)  # an evaluation after the checkpoint: the re-run makes it again
    assert fail_for_rerun(study, frozen(study, dead), LOST)
    rerun = study.ask()
    resumed = TrialCheckpoint(rerun, store).take_over(tmp_path / "resume")
    # The re-run gets the checkpoint's files, and where it came from.
    assert (resumed.step, resumed.evaluation, resumed.trial) == (8, 1, dead.number)
    assert (tmp_path / "resume" / "trainer_state.json").read_text() == '{"global_step": 8}'
    # The dead trial's reports up to the checkpoint, and its rungs, are the re-run's now.
    mine = frozen(study, rerun)
    assert mine.intermediate_values == {1: 0.5}
    assert mine.system_attrs["completed_rung_0"] == 0.5
    # The checkpoint is the re-run's: its pointer names it, and the store holds that one file.
    assert latest_checkpoint(mine).artifact_id == resumed.artifact_id
    assert files_in(tmp_path) == {resumed.artifact_id}


def test_a_save_cut_short_is_removed_by_whoever_takes_over(url, study_name, store, tmp_path):
    study = open_study(url, study_name)
    dead = start_trial_with_history(study)
    keeper = TrialCheckpoint(dead, store)
    keeper.keep(saved_checkpoint(tmp_path, 4), step=4, evaluation=1)
    kept = keeper.current.artifact_id
    # What a kill -9 in the middle of the next save leaves: the pointer lists the artifact being
    # written, and part of it is in the store.
    half_written = f"{ARTIFACT_PREFIX}half-written.tar"
    keeper._point_at(keeper.current, pending=[half_written])
    (tmp_path / "artifacts" / half_written).write_bytes(b"\0" * 100)
    assert fail_for_rerun(study, frozen(study, dead), LOST)
    resumed = TrialCheckpoint(study.ask(), store).take_over(tmp_path / "resume")
    # The re-run resumes from the complete checkpoint and removes the half-written one.
    assert resumed.artifact_id == kept
    assert files_in(tmp_path) == {kept}


def test_a_worker_whose_trial_was_ended_by_the_sweep_leaves_the_checkpoint(
    url, study_name, store, tmp_path
):
    study = open_study(url, study_name)
    trial = start_trial_with_history(study)
    keeper = TrialCheckpoint(trial, store)
    keeper.keep(saved_checkpoint(tmp_path, 4), step=4, evaluation=1)
    kept = keeper.current.artifact_id
    # The sweep fails the trial as lost while its worker is stopped; the worker wakes up.
    assert fail_for_rerun(study, frozen(study, trial), LOST)
    # Its next save is refused and leaves nothing; its end removes nothing: the checkpoint is its
    # re-run's to take.
    with pytest.raises(UpdateFinishedTrialError):
        keeper.keep(saved_checkpoint(tmp_path, 8), step=8, evaluation=2)
    keeper.discard()
    assert files_in(tmp_path) == {kept}
    assert study.trials[1].state == optuna.trial.TrialState.WAITING


def test_a_trial_lost_for_good_leaves_no_checkpoint(url, study_name, store, tmp_path):
    study = open_study(url, study_name, max_retries=1)
    dead = start_trial_with_history(study)
    TrialCheckpoint(dead, store).keep(saved_checkpoint(tmp_path, 4), step=4, evaluation=1)
    assert fail_for_rerun(study, frozen(study, dead), LOST)
    # The re-run takes the checkpoint over and replaces it by its own, then is lost mid-save.
    rerun = study.ask()
    keeper = TrialCheckpoint(rerun, store)
    keeper.take_over(tmp_path / "resume")
    keeper.keep(saved_checkpoint(tmp_path, 8), step=8, evaluation=2)
    half_written = f"{ARTIFACT_PREFIX}half-written.tar"
    keeper._point_at(keeper.current, pending=[half_written])
    (tmp_path / "artifacts" / half_written).write_bytes(b"\0" * 100)
    assert len(files_in(tmp_path)) == 2
    # Lost a second time, more than max_retries: no re-run resumes from it, so the transaction
    # that fails it removes every checkpoint of the chain, and its pointer names none.
    assert fail_for_rerun(study, frozen(study, rerun), LOST)
    trials = study.trials
    assert len(trials) == 2 and "not re-run" in trials[1].user_attrs["fail_reason"]
    assert files_in(tmp_path) == set()
    assert latest_checkpoint(trials[1]) is None


def test_the_next_sweep_removes_what_a_dead_sweeper_left(url, study_name, store, tmp_path):
    study = open_study(url, study_name, max_retries=0)
    dead = start_trial_with_history(study)
    TrialCheckpoint(dead, store).keep(saved_checkpoint(tmp_path, 4), step=4, evaluation=1)
    (kept,) = files_in(tmp_path)
    assert fail_for_rerun(study, frozen(study, dead), LOST)
    assert files_in(tmp_path) == set()
    # What a sweeper killed between its commit and the removal leaves: the file, which the lost
    # trial's pointer lists as pending.
    (tmp_path / "artifacts" / kept).write_bytes(b"\0" * 100)
    assert study.trials[0].system_attrs[CHECKPOINT_ATTR] == {"latest": None, "pending": [kept]}
    # Any worker's next stale-trial sweep removes it and empties the list; one more finds nothing.
    for _ in range(2):
        sweeper = open_study(url, study_name, max_retries=0)
        fail_stale_trials(sweeper)
        assert files_in(tmp_path) == set()
        # (Read by a storage that has not cached the finished trial.)
        pointer = open_study(url, study_name).trials[0].system_attrs[CHECKPOINT_ATTR]
        assert pointer == {"latest": None, "pending": []}
