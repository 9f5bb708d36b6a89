"""The kept model is the best COMPLETE trial's, always: real worker processes, then best and export.

Each worker process runs study.optimize with an objective that does what the runner does at the end
of a trial: offer its model (a small BERT with weights seeded by the trial number) and return the
value, after which Optuna marks the trial COMPLETE and the pointer moves in that transaction. The
tests kill a worker between the two, and let workers complete at once with the window between
reading and writing the pointer widened (HPSEARCH_TEST_SETTLE_DELAY), so that a pointer written
without the study's row lock would end on the worst model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import optuna
import pytest

from hpsearch.spec import parse_spec
from hpsearch.storage import BEST_MODEL_ATTR, open_storage, resolve_storage_url
from hpsearch.study import open_study
from tests.conftest import run_hpsearch

pytestmark = pytest.mark.slow

VALUES = [0.9, 0.8, 0.7, 0.6]  # worker k offers VALUES[k]; worker 0 has the best model
TINY_BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "vocab_size": 99,
}

# A worker as the runner behaves: it trains (here: builds a tiny BERT seeded by the trial number),
# offers its model, then returns the value, after which Optuna marks the trial COMPLETE. With
# `hang`, it stops between the offer and the return (where a kill -9 can land in real life).
OPTIMIZING_WORKER = """
import json, sys, time
from pathlib import Path
import optuna, torch
from transformers import BertConfig, BertModel
from hpsearch.spec import suggest_params
from hpsearch.storage import (BestModelKeeper, artifact_dir, open_artifact_store, open_storage,
                              resolve_storage_url)
from hpsearch.study import stored_spec

url, name, value, rundir = sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])
config, mode = json.loads(sys.argv[5]), sys.argv[6]
storage_url = resolve_storage_url(url)
storage = open_storage(storage_url)
spec = stored_spec(storage, name)
study = optuna.load_study(study_name=name, storage=storage)
keeper = BestModelKeeper(open_artifact_store(artifact_dir(storage_url)))

def objective(trial):
    suggest_params(trial, spec.searched_params)
    torch.manual_seed(trial.number)
    model = BertModel(BertConfig(**config))
    keeper.offer(trial, value, model.save_pretrained)
    (rundir / f"offered-{trial.number}").touch()
    if mode == "hang":
        time.sleep(600)
    while not (rundir / "go").exists():  # every worker returns its value at the same moment
        time.sleep(0.005)
    return value

study.optimize(objective, n_trials=1)
"""


def start_worker(url, name, value, rundir, mode="return", env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            OPTIMIZING_WORKER,
            url,
            name,
            str(value),
            str(rundir),
            json.dumps(TINY_BERT),
            mode,
        ],
        cwd=rundir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for(path, worker, timeout=300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert worker.poll() is None and time.monotonic() < deadline, worker.communicate()
        time.sleep(0.05)


def storage_servers():
    urls = [pytest.param("sqlite", id="sqlite")]
    for variable, backend in (
        ("HPSEARCH_TEST_POSTGRES", "postgresql"),
        ("HPSEARCH_TEST_MYSQL", "mysql"),
    ):
        if os.environ.get(variable):
            urls.append(pytest.param(os.environ[variable], id=backend))
    return urls


@pytest.mark.parametrize("server", storage_servers())
def test_a_worker_killed_between_its_upload_and_complete_leaves_the_best_model_kept(
    server, tmp_path, monkeypatch, tiny_spec
):
    url = f"sqlite:///{tmp_path / 'hp.db'}" if server == "sqlite" else server
    monkeypatch.setenv("HPSEARCH_ARTIFACTS", str(tmp_path / "artifacts"))
    name = f"killed-{uuid.uuid4().hex[:8]}"
    tiny_spec["dataset"].update(max_train_samples=16, max_eval_samples=8)
    storage = open_storage(resolve_storage_url(url))
    study, _ = open_study(storage, name, parse_spec(tiny_spec, "t"))
    try:
        first = start_worker(url, name, 0.6, tmp_path)
        (tmp_path / "go").touch()
        assert first.wait(timeout=300) == 0, first.communicate()
        # The second worker's model is better; it is uploaded, then the worker dies before its
        # trial is COMPLETE.
        second = start_worker(url, name, 0.9, tmp_path, mode="hang")
        wait_for(tmp_path / "offered-1", second)
        second.kill()
        second.wait()
        # Another worker's heartbeat sweep finds the trial stale and fails it.
        storage.grace_period = 1
        time.sleep(2.5)
        optuna.storages.fail_stale_trials(study)
        trials = study.trials
        assert [t.state.name for t in trials[:2]] == ["COMPLETE", "FAIL"]
        assert study.best_trial.number == 0

        # The pointer names the best COMPLETE trial, and its model file is still there; the dead
        # worker's upload is gone.
        pointer = study.user_attrs.get(BEST_MODEL_ATTR)
        assert pointer is not None and pointer["trial"] == 0, pointer
        store = tmp_path / "artifacts"
        assert sorted(p.name for p in store.iterdir()) == [pointer["artifact_id"]]
        live = {
            k.removeprefix("artifacts:")
            for k, v in storage.get_study_system_attrs(study._study_id).items()
            if k.startswith("artifacts:") and json.loads(v) is not None
        }
        # The dashboard lists the kept model alone.
        assert live == {pointer["artifact_id"]}

        # best, export and train all name trial 0.
        best = run_hpsearch("best", "--study", name, "--storage", url, "--json", cwd=tmp_path)
        assert best.returncode == 0, best.stderr
        shown = json.loads(best.stdout)
        assert shown["number"] == 0 and shown["best_model"]["trial"] == 0, shown
        out = tmp_path / "exported"
        exported = run_hpsearch("export", "--study", name, "--storage", url, str(out), cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        assert "exported trial 0 (eval_accuracy 0.6000)" in exported.stdout
        assert_weights_are_those_of_trial(out, 0)
        if server == "sqlite":  # training is the same on every backend: once is enough
            trained = run_hpsearch(
                "train", "--study", name, "--storage", url, str(tmp_path / "final"), cwd=tmp_path
            )
            # train, too, retrains trial 0, and its note names trial 0's model.
            assert trained.returncode == 0, trained.stderr
            assert "trained trial 0 " in trained.stdout
    finally:
        if server != "sqlite":
            optuna.delete_study(study_name=name, storage=storage)


def assert_weights_are_those_of_trial(model_dir, number: int) -> None:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(number)
    expected = BertModel(BertConfig(**TINY_BERT)).state_dict()
    exported = BertModel.from_pretrained(model_dir).state_dict()
    assert all(torch.equal(exported[k], v) for k, v in expected.items())


def new_study(server, tmp_path, monkeypatch, tiny_spec, prefix):
    url = f"sqlite:///{tmp_path / 'hp.db'}" if server == "sqlite" else server
    monkeypatch.setenv("HPSEARCH_ARTIFACTS", str(tmp_path / "artifacts"))
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    tiny_spec["dataset"].update(max_train_samples=16, max_eval_samples=8)
    storage = open_storage(resolve_storage_url(url))
    study, _ = open_study(storage, name, parse_spec(tiny_spec, "t"))
    return url, name, storage, study


@pytest.mark.parametrize("server", storage_servers())
def test_workers_completing_at_once_keep_the_best_model(server, tmp_path, monkeypatch, tiny_spec):
    url, name, storage, study = new_study(server, tmp_path, monkeypatch, tiny_spec, "race")
    try:
        # The best waits least between reading the pointer and writing it, the worst longest: a
        # pointer written without a lock would end on the worst model.
        workers = [
            start_worker(
                url, name, value, tmp_path, env={"HPSEARCH_TEST_SETTLE_DELAY": str(0.4 * k)}
            )
            for k, value in enumerate(VALUES)
        ]
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("offered-*"))) < len(workers):
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), [
                w.communicate() for w in workers
            ]
            time.sleep(0.05)
        (tmp_path / "go").touch()
        outputs = [w.communicate(timeout=300) for w in workers]
        assert [w.returncode for w in workers] == [0] * len(workers), outputs
        best = study.best_trial
        # Every trial is COMPLETE and the pointer names the best of them.
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * len(VALUES)
        pointer = study.user_attrs[BEST_MODEL_ATTR]
        assert (pointer["trial"], pointer["value"]) == (best.number, 0.9)
        # Exactly one model file is left, the pointer's, and only its dashboard entry is live.
        store = tmp_path / "artifacts"
        assert sorted(p.name for p in store.iterdir()) == [pointer["artifact_id"]]
        entries = {
            k: json.loads(v)
            for k, v in storage.get_study_system_attrs(study._study_id).items()
            if k.startswith("artifacts:")
        }
        assert [k for k, v in entries.items() if v is not None] == [
            f"artifacts:{pointer['artifact_id']}"
        ]
        # The export's weights, card and message are all the best trial's.
        out = tmp_path / "exported"
        result = run_hpsearch("export", "--study", name, "--storage", url, str(out), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert f"exported trial {best.number} (eval_accuracy 0.9000)" in result.stdout
        assert f"**0.9000** (trial {best.number}," in (out / "README.md").read_text()
        assert_weights_are_those_of_trial(out, best.number)
    finally:
        if server != "sqlite":
            optuna.delete_study(study_name=name, storage=storage)


def test_a_best_trial_without_a_kept_model_is_said_in_one_line(tmp_path, monkeypatch, tiny_spec):
    url, name, _, study = new_study("sqlite", tmp_path, monkeypatch, tiny_spec, "unkept")
    first = start_worker(url, name, 0.6, tmp_path)
    (tmp_path / "go").touch()
    assert first.wait(timeout=300) == 0, first.communicate()
    # A better trial completed without a model (told by hand): the kept model is not the best's.
    trial = study.ask()
    study.tell(trial, 0.9)
    out = tmp_path / "exported"
    exported = run_hpsearch("export", "--study", name, "--storage", url, str(out), cwd=tmp_path)
    # export refuses in one line, without a traceback, and writes nothing.
    assert exported.returncode != 0
    expected = (
        f"Error: the best trial of study {name!r} (trial 1, value 0.9000) has no kept model "
        f"(the kept model is trial 0's, of value 0.6000); `hpsearch train --study {name}` "
        "trains its configuration again"
    )
    assert exported.stderr.strip().splitlines() == [expected]
    assert not out.exists()
    best = run_hpsearch("best", "--study", name, "--storage", url, cwd=tmp_path)
    # best shows trial 1 and says that its model is not kept.
    assert best.returncode == 0, best.stderr
    assert "has no kept model (the kept model is trial 0's" in " ".join(best.stdout.split())
    shown = json.loads(
        run_hpsearch("best", "--study", name, "--storage", url, "--json", cwd=tmp_path).stdout
    )
    assert shown["number"] == 1 and shown["best_model"] is None
