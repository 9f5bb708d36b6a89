"""The int8 form: loaded by hpsearch.deploy.load_int8 (and by the card's torch-only code) into a
model `pipeline()` serves; on the default study it loses at most one point of accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hpsearch.deploy import INT8_DIR, load_int8
from tests.conftest import REPO, run_hpsearch, write_spec
from tests.deploy.conftest import card_snippet

TEXTS = ["I love this car", "worst idea ever", "the car is blue"]


@pytest.mark.slow
def test_int8_loads_and_predicts_through_pipeline(deployed):
    import torch
    from transformers import AutoTokenizer, pipeline

    _, out, _ = deployed
    model = load_int8(out / INT8_DIR)
    # Its linear layers are int8 ones, and pipeline() serves it with the real label names.
    assert type(model.classifier).__module__.startswith("torch.ao.nn.quantized.dynamic")
    classify = pipeline(
        "text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(out / INT8_DIR)
    )
    assert {p["label"] for p in classify(TEXTS)} <= {"negative", "neutral", "positive"}
    # The card's code without hpsearch loads the same weights: the same logits.
    namespace = {}
    code = card_snippet((out / "README.md").read_text(), "### int8").replace(
        "path/to/this/directory", str(out)
    )
    with pytest.warns(
        DeprecationWarning, match="torch.ao.quantization is deprecated"
    ):  # torch 2.13 says so
        exec(code, namespace)  # noqa: S102 - the card's own code, as a user would paste it
    inputs = classify.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        np.testing.assert_array_equal(
            namespace["model"].eval()(**inputs).logits.numpy(), model(**inputs).logits.numpy()
        )


def one_trial_of_the_default_study() -> dict:
    """studies/sentiment.yaml (its model, data, caps, max_length) trained once at a good setting."""
    spec = yaml.safe_load((REPO / "studies" / "sentiment.yaml").read_text())
    spec.update(
        search_space={"learning_rate": {"choice": [1.0e-4]}},
        sampler={"name": "random", "seed": 0},
        pruner={"name": "none", "evals_per_epoch": 2},
        budget={"n_trials": 1},
    )
    spec["training"].update(per_device_train_batch_size=16, num_train_epochs=1)
    return spec


@pytest.mark.slow
def test_int8_loses_at_most_one_point_of_accuracy_on_the_default_study(tmp_path, cache_dir):
    spec = one_trial_of_the_default_study()
    write_spec(tmp_path, "sentiment", spec)
    env = {"HPSEARCH_CACHE": str(cache_dir)}
    trained = run_hpsearch("run", "--study", "sentiment", cwd=tmp_path, env=env)
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "deployed"
    exported = run_hpsearch(
        "export", "--study", "sentiment", "--quantize", "int8", str(out), cwd=tmp_path, env=env
    )
    assert exported.returncode == 0, exported.stderr
    forms = {m["form"]: m for m in json.loads((out / "deployment.json").read_text())["forms"]}
    fp32, int8 = forms["pytorch fp32"], forms["int8"]
    # Scored on the default study's whole eval set, the model learned (majority class: 0.431) ...
    assert (
        json.loads((out / "deployment.json").read_text())["eval_examples"]
        == spec["dataset"]["max_eval_samples"]
    )
    assert fp32["value"] > 0.6
    # ... and int8 keeps it within one point of accuracy.
    assert int8["value"] >= fp32["value"] - 0.01, (fp32["value"], int8["value"])
