"""bench/held_out.py's test set: rows of the training pool that no trial saw (the re-training
itself is smoke-run in test_bench_head_to_head.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from head_to_head import load_bench_spec
from held_out import render, write_test_set

from hpsearch.spec import load_spec_file
from hpsearch.trial.data import evaluation_rows, training_rows


def bench_spec(tmp_path: Path, study: str, **caps: int) -> Path:
    raw = load_bench_spec(REPO / "studies" / study, None, caps.get("train"), caps.get("eval"))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_test_set_is_rows_the_capped_training_left_out(tmp_path):
    spec_path = bench_spec(tmp_path, "sentiment.yaml", train=300, eval=100)
    written = write_test_set(spec_path, 500, tmp_path / "test.parquet")
    dataset = load_spec_file(spec_path).dataset
    test = pd.read_parquet(tmp_path / "test.parquet")
    trained, _ = training_rows(dataset)
    assert written == len(test) == 500
    assert list(test.columns) == list(trained.columns)
    # No trial trained or was evaluated on a test row, nor on the same text (retweets).
    seen = set(trained[dataset.text]) | set(evaluation_rows(dataset)[dataset.text])
    assert not set(test[dataset.text]) & seen


def test_a_study_that_trains_on_its_whole_pool_has_no_test_set(tmp_path):
    spec_path = bench_spec(tmp_path, "ner.yaml")
    with pytest.raises(SystemExit, match="no row is left that no trial saw"):
        write_test_set(spec_path, 100, tmp_path / "test.parquet")
    assert not (tmp_path / "test.parquet").exists()


def test_the_table_sets_each_picks_draw_beside_its_configurations_mean():
    def row(contender, test, over_seeds):
        return {
            "seed": "0",
            "contender": contender,
            "trial": 3,
            "recorded_eval": 0.7,
            "eval": 0.7,
            "test_accuracy": test,
            "test_over_training_seeds": over_seeds,
        }

    text = render([row("hf", 0.76, [0.74, 0.76]), row("hpsearch", 0.73, [0.76, 0.77])], "accuracy")
    assert "| 0.7500 +- 0.0141 (n=2) |" in text and "| 0.7650 +- 0.0071 (n=2) |" in text
    # hpsearch's pick lost its draw by 3 points but is the better configuration by 1.5 on average.
    assert "test accuracy minus HF's: median -0.0300 (-0.0300); >= HF's in 0 of 1" in text
    assert "mean test accuracy over training seeds minus HF's: median +0.0150" in text
