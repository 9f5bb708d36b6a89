"""The dataset of a study: read, split, capped, made model inputs by its task, and cached on disk.

The cache is keyed by the model reference, the dataset section of the spec (which holds the task's
keys and max_length), the tokenizer's content and the content of the local source files
(hpsearch.trial.fingerprint), so every trial, every worker on the machine and every later run
reuses one tokenization, and a changed file or tokenizer never gets stale tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from hpsearch.errors import HpsearchError, first_line
from hpsearch.spec import Location
from hpsearch.spec.location import dataset_location
from hpsearch.spec.table import check_columns, read_file
from hpsearch.tasks import TASKS, DatasetBase, Labels
from hpsearch.trial.fingerprint import file_fingerprint, tokenizer_fingerprint

if TYPE_CHECKING:
    from datasets import Dataset

LABEL_FILE = "labels.json"
TEST_KEYS = ("test_fraction", "test_source", "test_split")
CACHE_VERSION = 3  # bumped when what is cached changes (2: made by the task; 3: keyed by content)


@dataclass(frozen=True)
class PreparedData:
    train: Dataset
    eval: Dataset
    label_names: list[str] | None
    """The labels (tags) the model predicts; None for a generative task."""
    test: Dataset | None = None
    """The held-out test set (dataset.test_*), which no trial sees; None without one."""
    key: str | None = None
    """Its cache entry's key (cache_key): what data augmentation's cache is keyed by."""


def _load_frame(location: Location, dataset: DatasetBase, split: str, key: str) -> pd.DataFrame:
    task = TASKS[dataset.task]
    if location.path is not None:
        try:
            frame = read_file(location.path, dataset, key)
        except (UnicodeDecodeError, ValueError) as e:
            raise HpsearchError(
                f"{key}: cannot read {location.reference}: {first_line(e)}"
            ) from None
    else:
        frame = _load_split(location, dataset, split, key)
    check_columns(frame, dataset, location.reference)
    kept = frame[list(task.columns(dataset).values())].dropna().reset_index(drop=True)
    kept.attrs["label_names"] = frame.attrs.get("label_names")
    return kept


def _load_split(location: Location, dataset: DatasetBase, split: str, key: str) -> pd.DataFrame:
    """One split of a hub dataset, or of a local folder of split files, through `datasets`."""
    import datasets

    try:
        loaded = datasets.load_dataset(location.loaded_by_datasets, dataset.subset, split=split)
    except Exception as e:  # noqa: BLE001 - the hub client raises many types; all mean "cannot get it"
        fix = (
            "name its files by split (train.csv, validation.csv)"
            if location.folder is not None
            else "without a network, point it at a local file or package:PKG/file"
        )
        raise HpsearchError(
            f"{key}: cannot load {location.describe()} split {split!r}: {first_line(e)}; {fix}"
        ) from None
    frame = loaded.to_pandas()
    frame.attrs["label_names"] = TASKS[dataset.task].known_labels(loaded.features, dataset)
    return frame


def _split(
    dataset: DatasetBase,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, Labels | None]:
    """(train, eval, test or None, labels). A test fraction is taken first, from the source's rows
    shuffled by dataset.seed, so the eval set and the training rows never hold a test row."""
    task = TASKS[dataset.task]
    train_location = dataset_location(dataset, "source")
    train = _load_frame(train_location, dataset, dataset.split, "dataset.source")
    test = None
    if dataset.test_source:
        test = _load_frame(
            dataset_location(dataset, "test_source"), dataset, dataset.split, "dataset.test_source"
        )
    elif dataset.test_split:
        test = _load_frame(train_location, dataset, dataset.test_split, "dataset.test_split")
    elif dataset.test_fraction:
        shuffled = train.sample(frac=1.0, random_state=dataset.seed).reset_index(drop=True)
        n_test = max(1, round(len(shuffled) * dataset.test_fraction))
        test, train = shuffled.iloc[:n_test], shuffled.iloc[n_test:].reset_index(drop=True)
    if dataset.eval_source:
        evaluation = _load_frame(
            dataset_location(dataset, "eval_source"), dataset, dataset.split, "dataset.eval_source"
        )
    elif dataset.eval_split:
        evaluation = _load_frame(train_location, dataset, dataset.eval_split, "dataset.eval_split")
    else:
        shuffled = train.sample(frac=1.0, random_state=dataset.seed).reset_index(drop=True)
        n_eval = max(1, round(len(shuffled) * dataset.resolved_eval_fraction))
        evaluation, train = shuffled.iloc[:n_eval], shuffled.iloc[n_eval:]
    labels = task.labels(train, evaluation, dataset, train.attrs["label_names"])

    def finish(frame: pd.DataFrame, cap: int | None) -> pd.DataFrame:
        return frame.sample(frac=1.0, random_state=dataset.seed).head(cap).reset_index(drop=True)

    return (
        finish(train, dataset.max_train_samples),
        finish(evaluation, dataset.max_eval_samples),
        None if test is None else finish(test, None),
        labels,
    )


def cache_key(dataset: DatasetBase, model_reference: str, tokenizer, cache_dir: Path) -> str:
    """The cache entry of `dataset` tokenized by `tokenizer`: keyed by the dataset section (the
    task's keys, max_length, the split and caps), the model reference, the tokenizer's content and
    the content of the source files (hpsearch.trial.fingerprint), so an entry is reused only for
    the same bytes tokenized the same way."""
    # Test keys left unset stay out, so a spec without a test set keeps its earlier cache entry.
    unset = {key for key in TEST_KEYS if getattr(dataset, key) is None}
    identity: dict = {
        "dataset": dataset.model_dump(mode="json", exclude=unset),
        "task": dataset.task,
        "model": model_reference,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "v": CACHE_VERSION,
    }
    for field in ("source", "eval_source", "test_source"):
        location = dataset_location(dataset, field)
        local = None if location is None else location.path or location.folder
        if local is not None:
            identity[field] = file_fingerprint(local, cache_dir)
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def prepare_data(
    dataset: DatasetBase, model_reference: str, tokenizer, cache_dir: Path
) -> PreparedData:
    """Load the train and eval sets as model inputs from the cache, built first if need be."""
    from datasets import load_from_disk

    key = cache_key(dataset, model_reference, tokenizer, cache_dir)
    target = cache_dir / f"data-{key}"
    if not (target / LABEL_FILE).is_file():
        _build_cache(dataset, tokenizer, target)
    saved = load_from_disk(str(target))
    names = json.loads((target / LABEL_FILE).read_text())
    return PreparedData(
        train=saved["train"],
        eval=saved["eval"],
        label_names=names,
        test=saved.get("test"),
        key=key,
    )


def training_rows(dataset: DatasetBase) -> tuple[pd.DataFrame, Labels | None]:
    """The training rows before tokenizing (the split and caps of the cached data) and the label
    set: what augmentation (hpsearch.trial.augment) makes new rows from."""
    train, _, _, labels = _split(dataset)
    return train, labels


def evaluation_rows(dataset: DatasetBase) -> pd.DataFrame:
    """The eval rows before tokenizing (the split and cap of the cached data): what a test set
    made outside the study (bench/held_out.py) must not repeat."""
    return _split(dataset)[1]


def encode_rows(
    frame: pd.DataFrame, dataset: DatasetBase, tokenizer, labels: Labels | None, key: str
) -> Dataset:
    """Rows as the task's model inputs."""
    from datasets import Dataset

    task = TASKS[dataset.task]
    rows = Dataset.from_pandas(frame, preserve_index=False)
    # All input columns go: a task may make more or fewer rows than it was given (packing).
    encoded = rows.map(
        lambda batch: task.encode(batch, dataset, tokenizer, labels),
        batched=True,
        remove_columns=rows.column_names,
    )
    if len(encoded) == 0:
        raise HpsearchError(
            f"{key}: no example is left to train or evaluate on after tokenizing; "
            "raise dataset.max_length or check the data"
        )
    return encoded


def save_atomically(splits: dict[str, Dataset], extra: dict[str, str], target: Path) -> None:
    """`splits` saved at `target` with the `extra` files, all at once: saved aside, then renamed
    (atomic), so another worker building the same entry at once sees all or nothing."""
    from datasets import DatasetDict

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        DatasetDict(splits).save_to_disk(str(staging))
        for name, text in extra.items():
            (staging / name).write_text(text)
        os.rename(staging, target)
    except OSError:
        if not all((target / name).is_file() for name in extra):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build_cache(dataset: DatasetBase, tokenizer, target: Path) -> None:
    train, evaluation, test, labels = _split(dataset)

    def encode(frame: pd.DataFrame, key: str) -> Dataset:
        return encode_rows(frame, dataset, tokenizer, labels, key)

    def by_length(encoded: Dataset) -> Dataset:
        # Eval order does not change the metrics; sorted by length, a batch pads to a similar size.
        lengths = [len(ids) for ids in encoded["input_ids"]]
        return encoded.select(sorted(range(len(lengths)), key=lengths.__getitem__))

    splits = {
        "train": encode(train, "dataset (training set)"),
        "eval": by_length(encode(evaluation, "dataset (eval set)")),
    }
    if test is not None:
        splits["test"] = by_length(encode(test, "dataset (test set)"))
    save_atomically(splits, {LABEL_FILE: json.dumps(labels.names if labels else None)}, target)
