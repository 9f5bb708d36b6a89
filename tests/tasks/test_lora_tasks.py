"""LoRA adapters on every task: the pretrained weights frozen, a small share of the model trained,
a classifier's or tagger's new head saved with the adapter."""

from __future__ import annotations

import copy
import json
import zipfile

import optuna
import pytest

from hpsearch.errors import TrialFailed
from hpsearch.spec import parse_spec
from hpsearch.storage import BEST_MODEL_ATTR, open_storage, resolve_storage_url
from hpsearch.workers import build_runner
from tests.conftest import TINY_SPEC
from tests.views.conftest import NER_SPEC

pytestmark = pytest.mark.slow


def task_specs(tiny_bart, tiny_gpt2) -> dict[str, dict]:
    from tests.tasks.test_causal_lm import clm_spec
    from tests.tasks.test_seq2seq import s2s_spec

    ner = copy.deepcopy(NER_SPEC)
    ner["dataset"].update(max_train_samples=64, max_eval_samples=32, max_length=32)
    specs = {
        "text-classification": copy.deepcopy(TINY_SPEC),
        "token-classification": ner,
        "seq2seq": s2s_spec(tiny_bart),
        "causal-lm": clm_spec(tiny_gpt2),
    }
    for spec in specs.values():
        spec["dataset"].update(max_train_samples=64)
        spec["search_space"] = {"learning_rate": {"choice": [1e-3]}}
        spec["training"] = {
            k: v for k, v in spec.get("training", {}).items() if k == "max_new_tokens"
        }
        spec["training"].update(num_train_epochs=1, per_device_train_batch_size=16)
        spec["pruner"] = {"name": "none", "evals_per_epoch": 1}
        spec["peft"] = {"r": 4}
    return specs


@pytest.mark.parametrize(
    "task", ["text-classification", "token-classification", "seq2seq", "causal-lm"]
)
def test_lora_trains_every_task(task, tiny_bart, tiny_gpt2, tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("HPSEARCH_CACHE", str(cache_dir))
    spec = parse_spec(task_specs(tiny_bart, tiny_gpt2)[task], "t")
    url = resolve_storage_url(f"sqlite:///{tmp_path / 'hp.db'}")
    runner = build_runner(spec, url, "t")
    study = optuna.create_study(
        storage=open_storage(url), study_name="t", direction=spec.objective.direction
    )
    study.optimize(runner, n_trials=1, catch=(TrialFailed,))
    (trial,) = study.trials
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_reason")
    total = sum(p.numel() for p in runner.factory.build(seed=0, knobs={}).parameters())
    # Adapters (and a classifier's or tagger's head) only: a small share of the model.
    assert 0 < trial.user_attrs["trainable_parameters"] < 0.2 * total
    with zipfile.ZipFile(
        tmp_path / "artifacts" / study.user_attrs[BEST_MODEL_ATTR]["artifact_id"]
    ) as zf:
        config = json.loads(zf.read("adapter_config.json"))
    head = {"text-classification": ["classifier"], "token-classification": ["classifier"]}.get(
        task, []
    )
    assert set(head) <= set(config["modules_to_save"] or [])
