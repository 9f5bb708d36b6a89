"""Augmented training rows on the shipped model and data: deterministic per seed, cached, only the
training split, tags kept aligned, back translation through a tiny config-built Marian model."""

from __future__ import annotations

import copy
import json
import random

import pytest

from hpsearch.spec import parse_spec
from hpsearch.trial import load_for_training
from hpsearch.trial.augment import Synonyms, augmented_data, back_translate, change_words
from tests.conftest import TINY_SPEC
from tests.tasks.test_token_classification import people_and_places
from tests.tasks.tiny_models import tiny_tokenizer

SETTINGS = {
    "synonym_replacement": 0.3,
    "random_insertion": 0.2,
    "random_swap": 0.3,
    "random_deletion": 0.2,
}


def text_spec(augment: dict, **dataset):
    spec = copy.deepcopy(TINY_SPEC)
    spec["augment"] = augment
    spec["dataset"].update(dataset)
    return parse_spec(spec, "t")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_for_training(text_spec({"random_swap": 0.1}))


@pytest.fixture(scope="module")
def synonyms(loaded):
    return Synonyms(loaded.tokenizer, loaded.factory, 5)


def test_synonyms_are_neighbours_in_the_models_embeddings(synonyms):
    # Whole words near each other in MiniLM's input embeddings, the word itself left out.
    assert "film" in synonyms.of("movie")
    assert "movie" not in synonyms.of("movie")
    assert len(synonyms.of("terrible")) == 5
    # A word of several pieces has none; a capitalized word gets a capitalized synonym.
    assert synonyms.of("xqzvwk") == []
    assert synonyms.pick("Movie", random.Random(0))[0].isupper()


def test_augmentation_is_deterministic_cached_and_only_of_the_training_split(
    loaded, tmp_path, monkeypatch
):
    spec = text_spec({**SETTINGS, "copies": {"int": [1, 3]}})
    params = {"augment.copies": 2}
    first = augmented_data(spec, loaded.data, loaded.tokenizer, loaded.factory, params, 7, tmp_path)
    # The original rows and two augmented copies of each.
    n = len(loaded.data.train)
    assert len(first.train) == 3 * n
    assert first.train[:n]["input_ids"] == loaded.data.train["input_ids"]
    assert first.train[n : 2 * n]["input_ids"] != loaded.data.train["input_ids"]
    # The eval set is the same object: never augmented.
    assert first.eval is loaded.data.eval and first.test is loaded.data.test
    entries = sorted(p.name for p in tmp_path.glob("augment-*"))
    assert len(entries) == 1

    # The same settings and seed read the cached entry: no row is made again.
    def must_not_augment(*args, **kwargs):
        raise AssertionError("augmented again instead of read from the cache")

    monkeypatch.setattr("hpsearch.trial.augment.augment_rows", must_not_augment)
    again = augmented_data(spec, loaded.data, loaded.tokenizer, loaded.factory, params, 7, tmp_path)
    assert again.train["input_ids"] == first.train["input_ids"]
    monkeypatch.undo()

    # Another seed makes other rows, in an entry of its own; rebuilt elsewhere, the same rows.
    other = augmented_data(spec, loaded.data, loaded.tokenizer, loaded.factory, params, 8, tmp_path)
    assert other.train[n:]["input_ids"] != first.train[n:]["input_ids"]
    rebuilt = augmented_data(
        spec, loaded.data, loaded.tokenizer, loaded.factory, params, 7, tmp_path / "elsewhere"
    )
    assert rebuilt.train["input_ids"] == first.train["input_ids"]
    assert len(list(tmp_path.glob("augment-*"))) == 2

    # A trial whose searched probabilities are all 0 trains on the data as it is.
    off = text_spec({"random_swap": {"float": [0.0, 0.5]}})
    unchanged = augmented_data(
        off,
        loaded.data,
        loaded.tokenizer,
        loaded.factory,
        {"augment.random_swap": 0.0},
        7,
        tmp_path,
    )
    assert unchanged is loaded.data


def test_only_words_tagged_o_change_and_tags_stay_aligned(synonyms):
    rows = people_and_places(200, seed=3)
    changed_any = False
    for i, row in enumerate(rows):
        words, tags = row["tokens"], row["ner_tags"]
        outside = [t == "O" for t in tags]
        new_words, new_tags = change_words(
            words, tags, outside, SETTINGS, random.Random(i), synonyms
        )
        # One tag per word, and the entities are the same words with the same tags, in order.
        assert len(new_words) == len(new_tags)
        entities = [(w, t) for w, t in zip(words, tags, strict=True) if t != "O"]
        assert [(w, t) for w, t in zip(new_words, new_tags, strict=True) if t != "O"] == entities
        # An I- tag still follows its entity's B- or I- tag.
        for before, tag in zip(["O", *new_tags], new_tags, strict=False):
            if tag.startswith("I-"):
                assert before[2:] == tag[2:]
        changed_any |= new_words != words
    assert changed_any


def test_a_tagging_studys_training_rows_are_augmented_with_their_tags(tmp_path):
    data = tmp_path / "people.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in people_and_places(60, seed=0)))
    spec = parse_spec(
        {
            **copy.deepcopy(TINY_SPEC),
            "task": "token-classification",
            "dataset": {"source": str(data), "max_length": 32},
            "objective": {"metric": "f1"},
            "augment": {**SETTINGS, "copies": 1},
        },
        "t",
    )
    loaded = load_for_training(spec)
    augmented = augmented_data(
        spec, loaded.data, loaded.tokenizer, loaded.factory, {}, 0, tmp_path / "cache"
    )
    n = len(loaded.data.train)
    assert len(augmented.train) == 2 * n
    # Each augmented row labels as many entity words as its original (entities are never changed).
    names = augmented.label_names
    for original, new in zip(
        augmented.train[:n]["labels"], augmented.train[n:]["labels"], strict=True
    ):
        assert [names[t] for t in original if t >= 0 and names[t] != "O"] == [
            names[t] for t in new if t >= 0 and names[t] != "O"
        ]


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory):
    """A Marian translation model built from a config: random weights, so its output is noise,
    but it goes the way a real one does (hub or local directory, generate, decode)."""
    from transformers import MarianConfig, MarianMTModel

    directory = tmp_path_factory.mktemp("marian")
    tokenizer = tiny_tokenizer()
    config = MarianConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        max_length=12,
    )
    MarianMTModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_back_translation_through_a_local_model(loaded, tiny_marian, tmp_path):
    models = {"model": str(tiny_marian), "pivot_model": str(tiny_marian)}
    texts = ["i love this phone", "the weather is awful today"]
    translated = back_translate(texts, models)
    # One text back for each, and greedy decoding gives the same texts again.
    assert len(translated) == 2 and all(isinstance(t, str) and t for t in translated)
    assert back_translate(texts, models) == translated
    # In a spec: each copy is translated (probability 1), and no EDA operation is needed.
    spec = text_spec({"back_translation": models})
    augmented = augmented_data(spec, loaded.data, loaded.tokenizer, loaded.factory, {}, 0, tmp_path)
    n = len(loaded.data.train)
    assert len(augmented.train) == 2 * n
    assert augmented.train[n:]["input_ids"] != loaded.data.train["input_ids"]
