"""`export`: a directory `pipeline()` loads, with real label names and a model card."""

from __future__ import annotations

import pytest

from tests.conftest import run_hpsearch


@pytest.mark.slow
def test_export_loads_in_pipeline_with_real_label_names(real_study):
    from transformers import pipeline

    out = real_study / "exported"
    result = run_hpsearch("export", "--study", "views", str(out), cwd=real_study)
    assert result.returncode == 0, result.stderr
    card = (out / "README.md").read_text()
    assert "best of 3 trials" in card and "| learning_rate | 0.0003 |" in card
    classify = pipeline("text-classification", model=str(out))
    predictions = classify(["I love this car", "worst idea ever", "the car is blue"])
    # The exported config carries the label names: predictions are words, not LABEL_0.
    assert {p["label"] for p in predictions} <= {"negative", "neutral", "positive"}
    # A second export into the same, now non-empty, directory is refused.
    again = run_hpsearch("export", "--study", "views", str(out), cwd=real_study)
    assert again.returncode == 1 and "is not an empty directory" in again.stderr
