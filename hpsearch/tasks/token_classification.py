"""Token classification (NER, POS): a sentence as a list of words, and a tag for each word.

Tags are aligned to sub-word tokens: a word's first piece carries its tag, the other pieces (and
the special tokens) are ignored by the loss and the metrics, unless `label_all_tokens` gives every
piece the tag (a B- tag continued as I-, so that a word stays one entity). Entity-level precision,
recall and F1 come from seqeval (conlleval's lenient reading, or a strict `tag_scheme`), token
accuracy is over the tagged pieces.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from hpsearch.errors import HpsearchError, SpecError
from hpsearch.tasks.base import IGNORED, DatasetBase, Direction, Labels, Task
from hpsearch.tasks.conll import SUFFIXES, read_conll

# A tag of a chunking scheme: O, or a prefix and an entity type (B-PER, I-geo-loc, S-ORG, ...).
CHUNK_TAG = re.compile(r"^(O|[BIESLU]-.+)$")
ENTITY_METRICS = ("precision", "recall", "f1")
# seqeval's names for the schemes it reads strictly; BIOES is the common name of its IOBES.
SCHEMES = {
    "IOB1": "IOB1",
    "IOB2": "IOB2",
    "IOE1": "IOE1",
    "IOE2": "IOE2",
    "IOBES": "IOBES",
    "BIOES": "IOBES",
    "BILOU": "BILOU",
}


class TokenClassificationData(DatasetBase):
    task: Literal["token-classification"] = Field(
        default="token-classification", exclude=True, repr=False
    )
    tokens: str = "tokens"
    """The column holding each sentence's words (a list of strings); CoNLL files get it made."""
    tags: str = "ner_tags"
    """The column holding each word's tag (strings, or integers with a hub ClassLabel feature)."""
    tag_column: int = -1
    """CoNLL files: the index of the tag among a line's columns (the token is the first)."""
    tag_scheme: Literal["IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BIOES", "BILOU"] | None = None
    """None: entities read leniently, as conlleval does; a scheme: read strictly by its rules."""
    label_all_tokens: bool = False
    """Tag every sub-word piece of a word, not only the first (and score them all)."""


def _read(path, dataset: TokenClassificationData, key: str) -> pd.DataFrame:
    return read_conll(path, dataset.encoding, dataset.tag_column, dataset.tokens, dataset.tags, key)


class TokenClassification(Task):
    name = "token-classification"
    Dataset = TokenClassificationData
    metrics: ClassVar[dict[str, Direction]] = {
        "f1": "maximize",
        "precision": "maximize",
        "recall": "maximize",
        "accuracy": "maximize",
        "loss": "minimize",
    }
    default_metric = "f1"
    model_class = "AutoModelForTokenClassification"
    peft_task_type = "TOKEN_CLS"
    deployable = True
    collator_class = "DataCollatorForTokenClassification"
    pipeline_task = "token-classification"
    file_readers: ClassVar[dict] = dict.fromkeys(SUFFIXES, _read)

    def columns(self, dataset: TokenClassificationData) -> dict[str, str]:
        return {"dataset.tokens": dataset.tokens, "dataset.tags": dataset.tags}

    def check_frame(
        self, frame: pd.DataFrame, dataset: TokenClassificationData, origin: str
    ) -> None:
        for number, (words, tags) in enumerate(
            zip(frame[dataset.tokens], frame[dataset.tags], strict=True), start=1
        ):
            for key, value in (("tokens", words), ("tags", tags)):
                if isinstance(value, str) or not hasattr(value, "__len__"):
                    raise SpecError(
                        f"dataset.{key}: row {number} of {origin} holds {type(value).__name__} "
                        f"{_short(value)}, not a list (one entry per word)"
                    )
            if len(words) != len(tags):
                raise SpecError(
                    f"dataset.tags: row {number} of {origin} has {len(words)} tokens but "
                    f"{len(tags)} tags; each word needs one tag"
                )

    def known_labels(self, features, dataset: TokenClassificationData) -> list[str] | None:
        # A hub sequence of ClassLabel (List(ClassLabel) in datasets 4+, Sequence before).
        inner = getattr(features.get(dataset.tags), "feature", None)
        names = getattr(inner, "names", None)
        return list(names) if names else None

    def labels(self, train, evaluation, dataset: TokenClassificationData, known) -> Labels:
        if known is not None:
            labels = Labels(known, {i: i for i in range(len(known))})
        else:
            seen = {tag for tags in train[dataset.tags] for tag in tags}
            # "O" first, then by entity type, B- before I-: the order people read a tag set in.
            names = sorted({str(tag) for tag in seen}, key=lambda t: (t != "O", t[2:], t))
            index = {name: i for i, name in enumerate(names)}
            labels = Labels(names, {tag: index[str(tag)] for tag in seen})
            unseen = {str(tag) for tags in evaluation[dataset.tags] for tag in tags} - set(names)
            if unseen:
                raise HpsearchError(
                    "dataset.tags: the eval set has tags the training set lacks: "
                    f"{', '.join(sorted(unseen))}; train on more rows, or map those tags to ones "
                    "training has"
                )
        if len(labels.names) < 2:
            raise HpsearchError(
                f"dataset.tags: a single tag {labels.names}; a tagger needs two or more"
            )
        if dataset.tag_scheme and not is_chunking(labels.names):
            raise HpsearchError(
                f"dataset.tag_scheme: {dataset.tag_scheme} needs tags like B-PER and O, but the "
                f"data has {_not_chunk_tags(labels.names)}; remove tag_scheme"
            )
        return labels

    def encode(self, batch, dataset: TokenClassificationData, tokenizer, labels: Labels) -> dict:
        if not getattr(tokenizer, "is_fast", False):
            raise HpsearchError(
                "model: token-classification needs a fast tokenizer (one with word_ids())"
            )
        words = [[str(w) for w in sentence] for sentence in batch[dataset.tokens]]
        encoded = tokenizer(
            words, is_split_into_words=True, truncation=True, max_length=dataset.max_length
        )
        continuing = continuation_ids(labels.names)
        encoded["labels"] = [
            align_tags(
                [labels.ids[t] for t in tags],
                encoded.word_ids(i),
                continuing if dataset.label_all_tokens else None,
            )
            for i, tags in enumerate(batch[dataset.tags])
        ]
        return encoded

    def check_metric(self, metric: str, labels: list[str]) -> None:
        if metric in ENTITY_METRICS and not is_chunking(labels):
            raise HpsearchError(
                f"objective.metric: {metric} scores entities, but tags such as "
                f"{_not_chunk_tags(labels)} mark none (entities are tagged O, B-TYPE, I-TYPE, "
                "...); use metric: accuracy"
            )

    def compute_metrics(
        self, dataset: TokenClassificationData, tokenizer, labels: list[str], features=None
    ):
        return TagMetrics(labels, dataset.tag_scheme)

    def describe_data(self, dataset: TokenClassificationData) -> str:
        if dataset.source.endswith(SUFFIXES):
            return f"CoNLL columns: the token first, the tag in column {dataset.tag_column}"
        return f"tokens column `{dataset.tokens}`, tags column `{dataset.tags}`"

    def onnx_usage(self) -> list[str]:
        lines = super().onnx_usage()
        lines[-1] = (
            "labels = [[config.id2label[int(i)] for i in row] for row in logits.argmax(-1)]  "
            "# a tag per token"
        )
        return lines

    def usage(self, model_dir) -> str:
        return (
            f"from transformers import pipeline\n"
            f'tag = pipeline("token-classification", model="{model_dir}", '
            'aggregation_strategy="simple")'
        )


def align_tags(
    word_tags: list[int], word_ids: list[int | None], continuing: dict[int, int] | None
) -> list[int]:
    """One label per sub-word token: the word's tag on its first piece, IGNORED on special tokens,
    and on the word's other pieces IGNORED, or (`continuing` given) the tag with B- made I-."""
    aligned, previous = [], None
    for word in word_ids:
        if word is None:
            aligned.append(IGNORED)
        elif word != previous:
            aligned.append(word_tags[word])
        elif continuing is None:
            aligned.append(IGNORED)
        else:
            aligned.append(continuing.get(word_tags[word], word_tags[word]))
        previous = word
    return aligned


def continuation_ids(names: list[str]) -> dict[int, int]:
    """Tag id of B-X -> tag id of I-X, for each X the tag set has both of."""
    index = {name: i for i, name in enumerate(names)}
    return {
        i: index[f"I-{name[2:]}"]
        for i, name in enumerate(names)
        if name.startswith("B-") and f"I-{name[2:]}" in index
    }


def is_chunking(names: list[str]) -> bool:
    """True if the tags mark chunks (entities): every one is O or PREFIX-TYPE."""
    return all(CHUNK_TAG.match(name) for name in names)


def _not_chunk_tags(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names if not CHUNK_TAG.match(n))[:200]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class TagMetrics:
    """Trainer's compute_metrics for tags: entity-level scores when the tags mark entities
    (seqeval), token accuracy always, both over the pieces that carry a label."""

    def __init__(self, names: list[str], scheme: str | None = None):
        self.names = names
        self.scheme = scheme
        self.chunking = is_chunking(names)

    def __call__(self, prediction) -> dict[str, float]:
        logits = prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        return self.score(np.asarray(logits).argmax(-1), np.asarray(prediction.label_ids))

    def score(self, predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        kept = gold != IGNORED
        metrics = {"accuracy": float((predicted[kept] == gold[kept]).mean()) if kept.any() else 0.0}
        if self.chunking:
            true_tags = [
                [self.names[g] for g in row[mask]] for row, mask in zip(gold, kept, strict=True)
            ]
            predicted_tags = [
                [self.names[p] for p in row[mask]]
                for row, mask in zip(predicted, kept, strict=True)
            ]
            metrics.update(entity_scores(true_tags, predicted_tags, self.scheme))
        return metrics


def entity_scores(
    true_tags: list[list[str]], predicted_tags: list[list[str]], scheme: str | None
) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 (seqeval); an entity counts only if its span
    and type are both right."""
    from seqeval import metrics
    from seqeval import scheme as schemes

    options = {"zero_division": 0}
    if scheme is not None:
        options.update(mode="strict", scheme=getattr(schemes, SCHEMES[scheme]))
    return {
        "precision": float(metrics.precision_score(true_tags, predicted_tags, **options)),
        "recall": float(metrics.recall_score(true_tags, predicted_tags, **options)),
        "f1": float(metrics.f1_score(true_tags, predicted_tags, **options)),
    }
