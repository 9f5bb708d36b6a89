"""A trial's augmented training set: the training rows and `copies` changed copies of each, made
by the EDA operations and back translation (spec/augment.py), tokenized, and cached on disk.

Written here rather than taken from nlpaug (last release 2022): its synonyms need NLTK's WordNet,
downloaded at run time; its operations draw from the global `random`, so a row's copy depends on
every row before it; and it has no notion of tags, which token classification must keep aligned.
The four operations are a few lines each; each copy draws from its own generator, seeded by the
trial's seed, the row and the copy, so the same settings and seed make the same rows anywhere.

Synonyms are the nearest neighbours (cosine) of a word among the whole-word tokens of the model's
own input embeddings: always there, offline, for any model. They are related words more than
synonyms (docs/augmentation.md shows some). A word the tokenizer splits into pieces has none.

The augmented set is cached per (data cache entry, settings, seed) beside the tokenized data: a
re-run of a trial, and every trial that draws the same settings with the same seed, reads it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pandas as pd

from hpsearch.errors import HpsearchError, first_line
from hpsearch.spec import StudySpec
from hpsearch.spec.augment import EDA_OPERATIONS
from hpsearch.tasks import Labels
from hpsearch.trial.data import (
    PreparedData,
    cache_key,
    encode_rows,
    save_atomically,
    training_rows,
)

DONE_FILE = "augment.json"
OUTSIDE = "O"  # the tag of a word outside every entity: the only words changed
TRANSLATION_BATCH = 32


def augmented_data(
    spec: StudySpec, data: PreparedData, tokenizer, factory, params: dict, seed: int, cache: Path
) -> PreparedData:
    """`data` with its training split augmented by the trial's settings (`params`' augment.<key>
    and the fixed ones), read from the cache or built; `data` itself when nothing changes rows."""
    if spec.augment is None:
        return data
    settings = spec.augment.resolve(params)
    if not _changes_rows(settings):
        return data
    # The tokenizer's fingerprint changes once it has truncated (its backend's state), so the key
    # the data was cached under is taken from the data, not computed again.
    identity = {
        "data": data.key or cache_key(spec.dataset, spec.model, tokenizer, cache),
        "settings": settings,
        "seed": seed,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    target = cache / f"augment-{key}"
    if not (target / DONE_FILE).is_file():
        from datasets import concatenate_datasets

        rows, labels = training_rows(spec.dataset)
        synonyms = synonyms_of(tokenizer, factory, settings["synonyms"])
        new = augment_rows(rows, spec, labels, settings, seed, synonyms)
        encoded = [encode_rows(frame, spec.dataset, tokenizer, labels, "augment") for frame in new]
        train = concatenate_datasets([data.train, *encoded])
        save_atomically({"train": train}, {DONE_FILE: json.dumps(identity)}, target)
    from datasets import load_from_disk

    train = load_from_disk(str(target))["train"]
    # Keyed as its own entry, so what is cached per training set (teacher outputs) follows it.
    return dataclasses.replace(data, train=train, key=f"augment-{key}")


def _changes_rows(settings: dict[str, Any]) -> bool:
    translated = settings.get("back_translation") and settings["back_translation.probability"] > 0
    return bool(translated) or any(settings[op] > 0 for op in EDA_OPERATIONS)


def augment_rows(
    rows: pd.DataFrame,
    spec: StudySpec,
    labels: Labels | None,
    settings: dict[str, Any],
    seed: int,
    synonyms: Synonyms,
) -> list[pd.DataFrame]:
    """The augmented copies of `rows` (one frame per copy); a copy of row i is made by its own
    generator, seeded by (seed, i, copy)."""
    dataset = spec.dataset
    tagged = spec.task == "token-classification"
    column = dataset.tokens if tagged else dataset.text
    copies = []
    for copy in range(settings["copies"]):
        frame = rows.copy()
        generators = [random.Random(f"{seed}:{i}:{copy}") for i in range(len(rows))]
        if settings.get("back_translation"):
            chance = settings["back_translation.probability"]
            chosen = [i for i, rng in enumerate(generators) if rng.random() < chance]
            translated = back_translate(
                [str(frame.at[i, column]) for i in chosen], settings["back_translation"]
            )
            for i, text in zip(chosen, translated, strict=True):
                frame.at[i, column] = text
        changed_words, changed_tags = [], []
        for i, rng in enumerate(generators):
            if tagged:
                words = [str(w) for w in frame.at[i, column]]
                tags = list(frame.at[i, dataset.tags])
                outside = [labels.names[labels.ids[t]] == OUTSIDE for t in tags]
                words, tags = change_words(words, tags, outside, settings, rng, synonyms)
                changed_words.append(words)
                changed_tags.append(tags)
            else:
                words = str(frame.at[i, column]).split()
                words, _ = change_words(words, words, [True] * len(words), settings, rng, synonyms)
                changed_words.append(" ".join(words))
        frame[column] = changed_words
        if tagged:
            frame[dataset.tags] = changed_tags
        copies.append(frame)
    return copies


def change_words(
    words: list[str],
    tags: list,
    changeable: list[bool],
    settings: dict[str, Any],
    rng: random.Random,
    synonyms: Synonyms,
) -> tuple[list[str], list]:
    """The EDA operations on one row, in the paper's order (replace, insert, swap, delete), each
    word changed with its operation's probability. Only `changeable` words change, move or go,
    and a word keeps its tag wherever it goes; an inserted word is tagged like the word it
    follows (O, in token classification)."""
    rows = [[w, t, c] for w, t, c in zip(words, tags, changeable, strict=True)]
    for row in rows:
        if row[2] and rng.random() < settings["synonym_replacement"]:
            row[0] = synonyms.pick(row[0], rng) or row[0]
    inserted = []
    for row in rows:
        inserted.append(row)
        if row[2] and rng.random() < settings["random_insertion"]:
            donor = rng.choice([r[0] for r in rows if r[2]])
            new = synonyms.pick(donor, rng)
            if new:
                inserted.append([new, row[1], True])
    rows = inserted
    free = [i for i, row in enumerate(rows) if row[2]]
    for i in free:
        if len(free) > 1 and rng.random() < settings["random_swap"]:
            j = rng.choice([k for k in free if k != i])
            rows[i], rows[j] = rows[j], rows[i]
    kept = [row for row in rows if not (row[2] and rng.random() < settings["random_deletion"])]
    if not kept:  # a row of words all deleted keeps one, as in EDA
        kept = [rng.choice(rows)]
    return [row[0] for row in kept], [row[1] for row in kept]


@functools.lru_cache(maxsize=2)
def synonyms_of(tokenizer, factory, k: int) -> Synonyms:
    """One Synonyms per model of a worker (kept for its next trials; they are found once)."""
    return Synonyms(tokenizer, factory, k)


class Synonyms:
    """A word's `k` nearest neighbours among the whole-word tokens of the model's input
    embeddings; computed on first use (the embeddings are read only if a synonym is asked for)."""

    def __init__(self, tokenizer, factory, k: int):
        self.tokenizer, self.factory, self.k = tokenizer, factory, k
        self._found: dict[str, list[str]] = {}
        self._table = None

    def _load(self):
        import torch

        embeddings = self.factory.build(0, {}, {}, None).get_input_embeddings().weight.detach()
        words, ids = [], []
        for token, token_id in self.tokenizer.get_vocab().items():
            word = token.removeprefix("\u2581").removeprefix("\u0120")  # SentencePiece, BPE
            if word.isalpha() and len(word) > 2 and not token.startswith("##"):
                words.append(word)
                ids.append(token_id)
        vectors = torch.nn.functional.normalize(embeddings[ids].float(), dim=1)
        self._table = (words, {w.lower(): i for i, w in enumerate(words)}, vectors)

    def of(self, word: str) -> list[str]:
        """The neighbours of `word` (lowercase), nearest first; [] for a word of several pieces."""
        key = word.lower()
        if key not in self._found:
            if self._table is None:
                self._load()
            words, index, vectors = self._table
            if key not in index:
                self._found[key] = []
            else:
                scores = vectors @ vectors[index[key]]
                nearest = scores.topk(min(len(words), 4 * self.k + 1)).indices.tolist()
                found = [words[i].lower() for i in nearest if words[i].lower() != key]
                self._found[key] = list(dict.fromkeys(found))[: self.k]
        return self._found[key]

    def pick(self, word: str, rng: random.Random) -> str | None:
        """One neighbour of `word`, capitalized as it is, or None if it has none."""
        found = self.of(word)
        if not found:
            return None
        new = rng.choice(found)
        return new.capitalize() if word[:1].isupper() else new


def back_translate(texts: list[str], models: dict[str, str]) -> list[str]:
    """`texts` translated by models["model"] and back by models["pivot_model"] (greedy, so the
    same texts give the same result)."""
    if not texts:
        return []
    pivot = _translate(texts, models["model"], "augment.back_translation.model")
    return _translate(pivot, models["pivot_model"], "augment.back_translation.pivot_model")


def _translate(texts: list[str], reference: str, key: str) -> list[str]:
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from hpsearch.spec import resolve_model
    from hpsearch.trial.model import source_of

    source = source_of(resolve_model(reference, key))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForSeq2SeqLM.from_pretrained(source).eval()
    except (OSError, ValueError) as e:
        raise HpsearchError(
            f"{key}: cannot load translation model {reference!r}: {first_line(e)}; point it at "
            "a local directory or package:PKG of a seq2seq model"
        ) from None
    # Within the model's positions (a tiny model may have few), and long enough for a sentence.
    limit = min(256, getattr(model.config, "max_position_embeddings", None) or 256)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), TRANSLATION_BATCH):
            batch = tokenizer(
                texts[start : start + TRANSLATION_BATCH],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=limit,
            )
            batch.pop("token_type_ids", None)
            longest = batch["input_ids"].shape[1]
            generated = model.generate(
                **batch, do_sample=False, num_beams=1, max_new_tokens=min(2 * longest + 8, limit)
            )
            out += tokenizer.batch_decode(generated, skip_special_tokens=True)
    return [text.strip() or original for text, original in zip(out, texts, strict=True)]
