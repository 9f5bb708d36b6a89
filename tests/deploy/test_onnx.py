"""The ONNX form: run by ONNX Runtime alone, it predicts what the PyTorch model predicts, on every
example of the study's eval set, at any batch size and length."""

from __future__ import annotations

import numpy as np
import pytest

from hpsearch.deploy import ONNX_DIR, load_onnx, run_onnx
from hpsearch.deploy.evalset import load_eval_set
from tests.deploy.conftest import card_snippet


@pytest.mark.slow
def test_onnx_predictions_agree_with_the_pytorch_model_on_the_eval_set(deployed, cache_dir):
    import torch
    from transformers import AutoModelForSequenceClassification

    _, out, spec = deployed
    eval_set = load_eval_set(spec, out, cache_dir)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    session = load_onnx(out / ONNX_DIR)
    # Whole batches of 64 padded examples, and single examples of every length in the set.
    for batch in eval_set.batches + eval_set.singles:
        inputs = {k: torch.from_numpy(v) for k, v in batch.items() if k != "labels"}
        with torch.inference_mode():
            expected = model(**inputs).logits.numpy()
        got = run_onnx(session, batch)
        # The same label for every example, and logits equal up to float rounding.
        np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_the_cards_onnx_code_predicts_label_names(deployed):
    _, out, _ = deployed
    namespace = {}
    code = card_snippet((out / "README.md").read_text(), "### ONNX").replace(
        "path/to/this/directory", str(out)
    )
    exec(code, namespace)  # noqa: S102 - the card's own code, as a user would paste it
    # It tokenizes, runs the session and reads the label names from the config.
    assert namespace["logits"].shape == (1, 3) and namespace["labels"][0] in {
        "negative",
        "neutral",
        "positive",
    }
