"""A multi-objective study keeps its Pareto front's models: real worker processes completing at
once, the window between reading the kept list and writing it widened
(HPSEARCH_TEST_SETTLE_DELAY), so that a list written without the study's row lock would lose a
member; then export by trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import optuna
import pytest

from hpsearch.storage.front_models import FRONT_MODELS_ATTR
from tests.conftest import run_hpsearch
from tests.storage.test_best_model import (
    OPTIMIZING_WORKER,
    TINY_BERT,
    assert_weights_are_those_of_trial,
    new_study,
    storage_servers,
)

pytestmark = pytest.mark.slow

# Worker k offers VALUES[k] (accuracy up, latency down): the first three trade off, the last is
# dominated by the first and must not be kept.
VALUES = [[0.9, 30.0], [0.8, 20.0], [0.7, 10.0], [0.6, 40.0]]
FRONT_WORKER = OPTIMIZING_WORKER.replace("float(sys.argv[3])", "json.loads(sys.argv[3])")


def start_front_worker(url, name, values, rundir, delay: float) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            FRONT_WORKER,
            url,
            name,
            json.dumps(values),
            str(rundir),
            json.dumps(TINY_BERT),
            "return",
        ],
        cwd=rundir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HPSEARCH_TEST_SETTLE_DELAY": str(delay)},
    )


@pytest.mark.parametrize("server", storage_servers())
def test_workers_completing_at_once_keep_every_front_member(
    server, tmp_path, monkeypatch, tiny_spec
):
    del tiny_spec["objective"]
    tiny_spec["objectives"] = [{"metric": "accuracy"}, {"metric": "latency_ms"}]
    url, name, storage, study = new_study(server, tmp_path, monkeypatch, tiny_spec, "front")
    try:
        workers = [
            start_front_worker(url, name, values, tmp_path, 0.4 * k)
            for k, values in enumerate(VALUES)
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

        by_values = {tuple(t.values): t.number for t in study.trials}
        front = {t.number for t in study.best_trials}
        # The front is the three trade-offs; every one of them keeps its model, none is lost to a
        # concurrent completion, and the dominated trial keeps none.
        assert front == {by_values[tuple(v)] for v in VALUES[:3]}
        kept = study.user_attrs[FRONT_MODELS_ATTR]
        assert {m["trial"] for m in kept} == front
        # Exactly the kept files are left, and only their dashboard entries are live.
        store = tmp_path / "artifacts"
        assert sorted(p.name for p in store.iterdir()) == sorted(m["artifact_id"] for m in kept)
        live = {
            k.removeprefix("artifacts:")
            for k, v in storage.get_study_system_attrs(study._study_id).items()
            if k.startswith("artifacts:") and json.loads(v) is not None
        }
        assert live == {m["artifact_id"] for m in kept}

        # Any front member exports by its number, with its own weights.
        member = by_values[tuple(VALUES[2])]
        out = tmp_path / "exported"
        result = run_hpsearch(
            "export", "--study", name, "--storage", url, "--trial", str(member), str(out),
            cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"exported trial {member} (eval_accuracy 0.7000)" in result.stdout
        assert_weights_are_those_of_trial(out, member)
    finally:
        if server != "sqlite":
            optuna.delete_study(study_name=name, storage=storage)


def test_the_kept_models_follow_the_front_up_to_the_bound(tmp_path, monkeypatch, tiny_spec):
    """In one process, trial after trial (the bound lowered to 2): a member that leaves the front
    loses its model, and a member that finds the list full keeps none."""
    from hpsearch.storage import (
        BestModelKeeper,
        artifact_dir,
        front_models,
        open_artifact_store,
        resolve_storage_url,
    )

    monkeypatch.setattr(front_models, "MAX_FRONT_MODELS", 2)
    del tiny_spec["objective"]
    tiny_spec["objectives"] = [{"metric": "accuracy"}, {"metric": "latency_ms"}]
    url, _, _, study = new_study("sqlite", tmp_path, monkeypatch, tiny_spec, "bound")
    keeper = BestModelKeeper(open_artifact_store(artifact_dir(resolve_storage_url(url))))

    def finish(values: list[float]) -> int:
        trial = study.ask()
        keeper.offer(trial, values, lambda directory: (directory / "w").write_text("w") and None)
        study.tell(trial, values)
        return trial.number

    def kept() -> list[int]:
        return [m["trial"] for m in study.user_attrs[FRONT_MODELS_ATTR]]

    first, second = finish([0.7, 20.0]), finish([0.6, 10.0])
    # Two trade-offs: both on the front, both kept.
    assert kept() == [first, second]
    third = finish([0.8, 30.0])
    # A third front member finds the list full: it is on the front but keeps no model.
    assert {t.number for t in study.best_trials} == {first, second, third}
    assert kept() == [first, second]
    fourth = finish([0.75, 15.0])
    # A newcomer that dominates a kept member (the first) takes its place; its file is removed.
    assert first not in {t.number for t in study.best_trials}
    assert kept() == [second, fourth]
    store = tmp_path / "artifacts"
    listed = sorted(m["artifact_id"] for m in study.user_attrs[FRONT_MODELS_ATTR])
    assert sorted(p.name for p in store.iterdir()) == listed
    keeper.close()
