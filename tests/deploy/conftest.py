"""What the deploy tests share: a small classifier trained through the real CLI, exported once in
every deployable form (the fixtures are per session: training and exporting take ~40 s)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpsearch.study import stored_spec
from tests.conftest import TINY_SPEC, run_hpsearch, write_spec


def storage_of(workdir: Path):
    from hpsearch.storage import open_storage, resolve_storage_url

    return open_storage(resolve_storage_url(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}"))


@pytest.fixture(scope="session")
def classifier_study(tmp_path_factory, cache_dir) -> Path:
    """One complete trial of a 3-class tweet classifier, at a learning rate that learns."""
    workdir = tmp_path_factory.mktemp("deploy")
    spec = json.loads(json.dumps(TINY_SPEC))
    spec["dataset"].update(max_train_samples=192, max_eval_samples=64)
    spec.update(
        search_space={"learning_rate": {"choice": [3e-4]}},
        training={"num_train_epochs": 1, "per_device_train_batch_size": 16},
        pruner={"name": "none"},
        budget={"n_trials": 1},
    )
    write_spec(workdir, "tweets", spec)
    result = run_hpsearch(
        "run", "--study", "tweets", cwd=workdir, env={"HPSEARCH_CACHE": str(cache_dir)}
    )
    assert result.returncode == 0, result.stderr
    return workdir


@pytest.fixture(scope="session")
def deployed(classifier_study, cache_dir):
    """`hpsearch export --quantize int8 --onnx` of that study: output, directory, stored spec."""
    out = classifier_study / "deployed"
    result = run_hpsearch(
        "export",
        "--study",
        "tweets",
        "--quantize",
        "int8",
        "--onnx",
        str(out),
        cwd=classifier_study,
        env={"HPSEARCH_CACHE": str(cache_dir)},
    )
    assert result.returncode == 0, result.stderr
    return result, out, stored_spec(storage_of(classifier_study), "tweets")


def card_snippet(card: str, heading: str) -> str:
    """The python block under a heading of the model card, pointed at the card's directory."""
    section = card.split(heading, 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]
