"""`status` and `best`: the right numbers, one-line errors, 10,000 trials without torch."""

from __future__ import annotations

import datetime
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hpsearch.spec import parse_spec
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import open_study
from tests.conftest import TINY_SPEC, run_hpsearch
from tests.views.conftest import make_synthetic_study


def test_status_and_best_give_the_right_numbers(tmp_path):
    make_synthetic_study(tmp_path / "s.db", "synthetic")
    url = f"sqlite:///{tmp_path / 's.db'}"
    status = run_hpsearch(
        "status", "--study", "synthetic", "--storage", url, "--json", cwd=tmp_path
    )
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    # 2 complete + 1 pruned + 1 failed-with-reason count; the running one does not yet.
    assert data["n_spent"] == 4 and data["n_trials_budget"] == 6
    assert data["states"] == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1, "RUNNING": 1}
    assert data["best_value"] == 0.72 and data["best_number"] == 1
    assert data["best_params"] == {"learning_rate": 2e-4}
    assert data["train_seconds"] == 26.0 and data["n_steps"] == 24
    # The pruned trial stopped 9 steps short, at 1 s per step.
    assert data["steps_saved"] == 9 and data["seconds_saved"] == pytest.approx(9.0)
    # How sure the best is: its interval over the eval set, and trial 0 (0.61) inside it.
    assert data["best_confidence"] == {"low": 0.6, "high": 0.84, "eval_examples": 50, "tied": [0]}
    (running,) = data["running"]
    assert running["host"] == "gpu-box" and running["device"] == "cuda:0 (H100)"
    assert 0 <= running["heartbeat_age_s"] < 60

    best = run_hpsearch("best", "--study", "synthetic", "--storage", url, "--json", cwd=tmp_path)
    data = json.loads(best.stdout)
    assert (data["number"], data["value"], data["seed"]) == (1, 0.72, 1)
    assert data["metrics"] == {"eval_accuracy": 0.72, "eval_loss": 0.7}
    assert data["confidence"]["tied"] == [0]

    # Without --json: tables for a person; every study listed when none is named.
    sure = "95% CI 0.6000-0.8400 over 50 eval examples; statistically tied with trial 0"
    wide = {"COLUMNS": "200"}  # one line per table row
    table = run_hpsearch(
        "status", "--study", "synthetic", "--storage", url, cwd=tmp_path, env=wide
    ).stdout
    assert "gpu-box" in table and sure in table
    assert (
        sure
        in run_hpsearch(
            "best", "--study", "synthetic", "--storage", url, cwd=tmp_path, env=wide
        ).stdout
    )
    listing = run_hpsearch("status", "--storage", url, cwd=tmp_path)
    assert "synthetic" in listing.stdout and "0.7200" in listing.stdout


def test_views_of_unknown_or_empty_studies_are_one_line_errors(tmp_path):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    # A read-only command does not create the database it was pointed at.
    missing = run_hpsearch("best", "--study", "nope", "--storage", url, cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.startswith(
        f"Error: no storage at {tmp_path / 'e.db'}; run "
    )
    assert not (tmp_path / "e.db").exists()
    storage = open_storage(resolve_storage_url(url))
    unknown = run_hpsearch("best", "--study", "nope", "--storage", url, cwd=tmp_path)
    assert (
        unknown.returncode == 1
        and unknown.stderr.strip()
        == "Error: no study 'nope' in the storage; the storage holds no study"
    )
    open_study(storage, "empty", parse_spec(json.loads(json.dumps(TINY_SPEC)), "t"))
    for args in (["best"], ["export", str(tmp_path / "out")]):
        result = run_hpsearch(*args, "--study", "empty", "--storage", url, cwd=tmp_path)
        assert result.returncode == 1 and result.stderr.startswith("Error: study 'empty' has no ")
        assert "Traceback" not in result.stderr


def bulk_copy_trials(database: Path, n: int) -> None:
    """Clone the study's first trial n times in one transaction: 10,000 trials in about a second."""
    with sqlite3.connect(database) as db:
        (template,) = db.execute(
            "select trial_id, study_id, state from trials where number = 0"
        ).fetchall()
        trial_id, study_id, state = template
        start = db.execute("select max(number) from trials").fetchone()[0] + 1
        first_id = db.execute("select max(trial_id) from trials").fetchone()[0] + 1
        now = datetime.datetime.now().isoformat(" ")
        ids = range(first_id, first_id + n)
        db.executemany(
            "insert into trials values (?, ?, ?, ?, ?, ?)",
            [(i, start + k, study_id, state, now, now) for k, i in enumerate(ids)],
        )
        for table, columns in (
            ("trial_values", "objective, value, value_type"),
            ("trial_params", "param_name, param_value, distribution_json"),
            ("trial_user_attributes", "key, value_json"),
            ("trial_intermediate_values", "step, intermediate_value, intermediate_value_type"),
        ):
            rows = db.execute(
                f"select {columns} from {table} where trial_id = ?", (trial_id,)
            ).fetchall()
            marks = ", ".join("?" for _ in range(len(rows[0]) + 1)) if rows else ""
            db.executemany(
                f"insert into {table} (trial_id, {columns}) values ({marks})",
                [(i, *row) for i in ids for row in rows],
            )


def test_status_of_10000_trials_without_torch(tmp_path):
    make_synthetic_study(tmp_path / "big.db", "big")
    bulk_copy_trials(tmp_path / "big.db", 10_000)
    code = (
        "import sys, json\nfrom hpsearch.cli import cli\ncli.main(['status', '--study', 'big', "
        f"'--storage', 'sqlite:///{tmp_path / 'big.db'}', '--json'], "
        "standalone_mode=False)\nprint('HEAVY', [m for m in ('torch', 'transformers') if m in "
        "sys.modules], file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    # 10,000 copies of the first (complete) trial plus the five of the synthetic study.
    assert data["states"]["COMPLETE"] == 10_002
    assert "HEAVY []" in result.stderr


def test_every_view_names_the_task_and_its_metrics(tmp_path):
    from hpsearch.study import stored_spec
    from hpsearch.views import model_card, render_note, write_report
    from hpsearch.views.note import workers
    from tests.views.conftest import NER_SPEC

    tagged = (
        {
            "eval_f1": 0.61,
            "eval_precision": 0.6,
            "eval_recall": 0.62,
            "eval_accuracy": 0.9,
            "eval_loss": 0.3,
        },
        {
            "eval_f1": 0.72,
            "eval_precision": 0.7,
            "eval_recall": 0.74,
            "eval_accuracy": 0.93,
            "eval_loss": 0.2,
        },
    )
    study = make_synthetic_study(tmp_path / "s.db", "tags", NER_SPEC, tagged)
    url = f"sqlite:///{tmp_path / 's.db'}"
    status = json.loads(
        run_hpsearch("status", "--study", "tags", "--storage", url, "--json", cwd=tmp_path).stdout
    )
    assert status["task"] == "token-classification" and status["metric"] == "eval_f1"
    assert status["best_metrics"] == tagged[1]
    table = run_hpsearch("status", "--study", "tags", "--storage", url, cwd=tmp_path).stdout
    assert "token-classification" in table and "precision 0.7000, recall 0.7400" in table
    listing = run_hpsearch("status", "--storage", url, "--json", cwd=tmp_path)
    assert json.loads(listing.stdout)[0]["task"] == "token-classification"
    # `best` shows the task's own metrics (entity scores), not classification's.
    best = run_hpsearch("best", "--study", "tags", "--storage", url, cwd=tmp_path).stdout
    assert "token-classification" in best
    assert (
        all(f"eval_{m}" in best for m in ("precision", "recall", "accuracy"))
        and "f1_macro" not in best
    )
    record = json.loads(
        run_hpsearch("best", "--study", "tags", "--storage", url, "--json", cwd=tmp_path).stdout
    )

    spec = stored_spec(open_storage(resolve_storage_url(url)), "tags")
    from hpsearch.study import summarize

    note = render_note("tags", spec, summarize(study, spec), workers(study), None)
    assert "task `token-classification`" in note and "`eval_f1`" in note
    assert (
        "| best trial's metrics | eval_f1 0.7200, eval_precision 0.7000, eval_recall 0.7400" in note
    )
    card = model_card("tags", spec, record)
    # The card says how the task's pipeline loads it, and what the data's columns were.
    assert "pipeline_tag: token-classification" in card and 'aggregation_strategy="simple"' in card
    assert "CoNLL columns" in card and "| eval_precision | 0.7000 |" in card
    write_report(study, spec, tmp_path / "report")
    page = (tmp_path / "report" / "report.html").read_text()
    assert "task token-classification" in page and "eval_recall" in page


def test_status_and_the_note_show_the_changes_later_runs_made(tmp_path):
    from hpsearch.study import spec_change_records, summarize
    from hpsearch.views import render_note
    from hpsearch.views.note import workers

    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(resolve_storage_url(url))
    spec = dict(TINY_SPEC, training={"num_train_epochs": 1})
    open_study(storage, "s", parse_spec(spec, "t"))
    spec["training"] = {"num_train_epochs": 1, "per_device_eval_batch_size": 8}
    study, _ = open_study(storage, "s", parse_spec(spec, "t"))
    status = run_hpsearch("status", "--study", "s", "--storage", url, "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    # `status --json` lists the change with its values, time and host.
    (change,) = json.loads(status.stdout)["spec_changes"]
    assert (change["key"], change["old"], change["new"]) == (
        "training.per_device_eval_batch_size",
        None,
        8,
    )
    assert change["at"] and change["host"]
    # The dashboard's note has a row for it, read from the study's record.
    changed = parse_spec(spec, "t")
    note = render_note(
        "s",
        changed,
        summarize(study, changed),
        workers(study),
        None,
        (),
        spec_change_records(study),
    )
    assert "## Spec changes" in note
    assert "| training.per_device_eval_batch_size | null | 8 |" in note
