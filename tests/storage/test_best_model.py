"""The kept model is always the best trial's: real worker processes finishing at once, then export.

Each process offers its own trial's model (a small BERT with weights seeded by the trial number) at
the same moment. The saves are delayed in reverse order of quality (HPSEARCH_TEST_SAVE_DELAY), so
that a keeper reading the pointer before its save and writing it after, without a lock, would end
with the worst model as "best".
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
from hpsearch.storage import BEST_MODEL_ATTR, artifact_dir, open_storage, resolve_storage_url
from hpsearch.study import open_study
from tests.conftest import run_hpsearch

pytestmark = pytest.mark.slow

VALUES = [0.9, 0.8, 0.7, 0.6]  # trial k offers VALUES[k]; trial 0 is the best
TINY_BERT = {
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "vocab_size": 99,
}

WORKER = """
import json, sys, time
from pathlib import Path
import optuna, torch
from transformers import BertConfig, BertModel
from hpsearch.storage import (BestModelKeeper, StudyLock, artifact_dir, open_artifact_store,
                              open_storage, resolve_storage_url)

url, name, number, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
rundir = Path(sys.argv[5])
storage_url = resolve_storage_url(url)
study = optuna.load_study(study_name=name, storage=open_storage(storage_url))
store = open_artifact_store(artifact_dir(storage_url))
keeper = BestModelKeeper(store, StudyLock(storage_url, name, "best-model"))
torch.manual_seed(number)
model = BertModel(BertConfig(**json.loads(sys.argv[6])))
(rundir / f"ready-{number}").touch()
while not (rundir / "go").exists():  # every process offers its model at the same moment
    time.sleep(0.005)
print("kept" if keeper.offer(study, number, value, model.save_pretrained) else "not kept")
"""


def storage_urls():
    urls = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get("HPSEARCH_TEST_POSTGRES"):
        urls.append(pytest.param(os.environ["HPSEARCH_TEST_POSTGRES"], id="postgresql"))
    return urls


@pytest.mark.parametrize("server", storage_urls())
def test_workers_finishing_at_once_keep_the_best_model_and_export_it(server, tmp_path, tiny_spec):
    url = f"sqlite:///{tmp_path / 'hp.db'}" if server == "sqlite" else server
    name = f"race-{uuid.uuid4().hex[:8]}"
    storage = open_storage(resolve_storage_url(url))
    study, _ = open_study(storage, name, parse_spec(tiny_spec, "t"))
    trials = [study.ask() for _ in VALUES]
    try:
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    url,
                    name,
                    str(t.number),
                    str(value),
                    str(tmp_path),
                    json.dumps(TINY_BERT),
                ],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                # The best saves fastest, the worst slowest: the last to write a blind pointer is
                # the worst.
                env={**os.environ, "HPSEARCH_TEST_SAVE_DELAY": str(0.4 * k)},
            )
            for k, (t, value) in enumerate(zip(trials, VALUES, strict=True))
        ]
        deadline = time.monotonic() + 300
        while not all((tmp_path / f"ready-{t.number}").exists() for t in trials):
            assert time.monotonic() < deadline and all(w.poll() is None for w in workers), [
                w.communicate() for w in workers
            ]
            time.sleep(0.05)
        (tmp_path / "go").touch()
        outputs = [w.communicate(timeout=300) for w in workers]
        assert [w.returncode for w in workers] == [0] * len(workers), outputs
        for trial, value in zip(trials, VALUES, strict=True):
            study.tell(trial, value)

        # The pointer names the best trial, whichever process wrote last ...
        pointer = study.user_attrs[BEST_MODEL_ATTR]
        assert (pointer["trial"], pointer["value"]) == (trials[0].number, 0.9)
        # ... exactly one model file is left, the pointer's, and only its dashboard entry is live.
        store = (
            artifact_dir(resolve_storage_url(url))
            if server == "sqlite"
            else tmp_path / "storage" / "artifacts"
        )
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
        assert f"exported trial {trials[0].number} (eval_accuracy 0.9000)" in result.stdout
        assert f"**0.9000** (trial {trials[0].number}," in (out / "README.md").read_text()
        assert_weights_are_those_of_trial(out, trials[0].number)
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
