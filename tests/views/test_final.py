"""What the views say of a study's final trainings (hpsearch train): note, status and model card."""

from __future__ import annotations

import json

from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import (
    plan_final_training,
    record_final_training,
    stored_spec,
    summarize,
)
from hpsearch.views import final_model_card, render_note
from hpsearch.views.note import workers
from tests.conftest import run_hpsearch
from tests.views.conftest import make_synthetic_study

RECORD = {
    "trial": 1,
    "seed": 1,
    "full_data": True,
    "epochs": 2.0,
    "epochs_asked": 2.0,
    "n_train_examples": 270,
    "n_eval_examples": 30,
    "n_steps": 34,
    "metric": "eval_accuracy",
    "value": 0.74,
    "trial_value": 0.72,
    "interval": [0.6, 0.86],
    "metrics": {"eval_accuracy": 0.74, "eval_loss": 0.65, "eval_runtime": 0.5},
    "train_seconds": 12.5,
    "out_dir": "/models/final-1",
    "host": "gpu-box",
    "finished_at": "2026-12-02 10:00:00 UTC",
}


def recorded_study(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = make_synthetic_study(tmp_path / "s.db", "synthetic")
    record_final_training(study, RECORD)
    return study, url


def test_note_and_status_show_the_final_trainings(tmp_path):
    study, url = recorded_study(tmp_path)
    spec = stored_spec(open_storage(resolve_storage_url(url)), "synthetic")
    note = render_note("synthetic", spec, summarize(study, spec), workers(study), None, [RECORD])
    # The note lists what was trained from the study: trial, data, epochs, metric by the trial's.
    assert "## Final trainings (hpsearch train)" in note
    assert (
        "| 1 | 270 rows (full data) | 2 | 0.7400 | 0.7200 | `/models/final-1` | gpu-box |" in note
    )
    # A study with none has no such section.
    assert "Final trainings" not in render_note(
        "synthetic", spec, summarize(study, spec), workers(study), None
    )

    status = run_hpsearch(
        "status", "--study", "synthetic", "--storage", url, "--json", cwd=tmp_path
    )
    assert json.loads(status.stdout)["final_trainings"] == [RECORD]
    table = run_hpsearch(
        "status", "--study", "synthetic", "--storage", url, cwd=tmp_path, env={"COLUMNS": "200"}
    )
    assert "final trainings" in table.stdout and "270 rows (full data)" in table.stdout
    assert "eval_accuracy 0.7400" in table.stdout and "/models/final-1" in table.stdout


def test_the_card_of_a_final_training(tmp_path):
    study, url = recorded_study(tmp_path)
    spec = stored_spec(open_storage(resolve_storage_url(url)), "synthetic")
    plan = plan_final_training(study, spec, 1, full_data=True, epochs=2.0)
    card = final_model_card(study, spec, plan, RECORD)
    # It says which trial it re-trained, on what data, for how long, and how it compares.
    assert "# synthetic: final training of trial 1 of an hpsearch study" in card
    assert "the configuration and seed (1)\nof trial 1" in card
    assert (
        "on all 270 training examples (the search's cap of max_train_samples dropped) for 2 epochs"
        in card
    )
    assert "(30 examples) it reached **0.7400** (95% CI 0.6000-0.8600)" in card
    assert (
        "the trial recorded 0.7200 (+0.0200 here); 95% CI 0.6000-0.8400 over 50 eval examples"
        in card
    )
    # The epochs asked for are among the fixed values; the task's metrics only, no runtimes.
    assert "| num_train_epochs | 2.0 |" in card and "| learning_rate | 0.0002 |" in card
    assert "| eval_loss | 0.6500 |" in card and "eval_runtime" not in card
