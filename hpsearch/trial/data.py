"""The dataset of a study: read, labelled, split, capped, tokenized once and cached on disk.

The cache is keyed by the model reference, the dataset section of the spec (which holds max_length)
and the identity of the source files, so every trial, every worker on the machine and every later run
reuses one tokenization.
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
from hpsearch.spec import DatasetSpec, Location, resolve_data
from hpsearch.spec.table import check_columns, read_file

if TYPE_CHECKING:
    from datasets import Dataset

LABEL_FILE = "labels.json"


@dataclass(frozen=True)
class PreparedData:
    train: Dataset
    eval: Dataset
    label_names: list[str]


def _load_frame(location: Location, spec: DatasetSpec, split: str, key: str) -> pd.DataFrame:
    if location.path is not None:
        try:
            frame = read_file(location.path, spec.encoding)
        except (UnicodeDecodeError, ValueError) as e:
            raise HpsearchError(f"{key}: cannot read {location.reference}: {first_line(e)}") from None
    else:
        frame = _load_split(location, spec.subset, split, spec.label, key)
    check_columns(frame, spec, key)
    columns = [c for c in (spec.text, spec.text_pair, spec.label) if c is not None]
    kept = frame[columns].dropna().reset_index(drop=True)
    kept.attrs["label_names"] = frame.attrs.get("label_names")
    return kept


def _load_split(location: Location, subset: str | None, split: str, label: str, key: str) -> pd.DataFrame:
    """One split of a hub dataset, or of a local folder of split files, through `datasets`."""
    import datasets

    try:
        dataset = datasets.load_dataset(location.loaded_by_datasets, subset, split=split)
    except Exception as e:  # noqa: BLE001 - the hub client raises many types; all mean "cannot get it"
        fix = ("name its files by split (train.csv, validation.csv)" if location.folder is not None
               else "without a network, point it at a local file or package:PKG/file")
        raise HpsearchError(
            f"{key}: cannot load {location.describe()} split {split!r}: {first_line(e)}; {fix}"
        ) from None
    frame = dataset.to_pandas()
    # A ClassLabel feature carries the label names the integer ids stand for.
    names = getattr(dataset.features.get(label), "names", None)
    if names:
        frame.attrs["label_names"] = list(names)
    return frame


def _label_names(labels: pd.Series, known: list[str] | None) -> tuple[list[str], dict]:
    """Sorted distinct labels as names, and the mapping from raw label to id."""
    if known is not None:
        return known, {i: i for i in range(len(known))}
    values = sorted(labels.unique(), key=lambda v: (str(type(v)), v))
    return [str(v) for v in values], {v: i for i, v in enumerate(values)}


def _split(spec: DatasetSpec) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    train_location = resolve_data(spec.source, "dataset.source")
    train = _load_frame(train_location, spec, spec.split, "dataset.source")
    known_names = train.attrs["label_names"]
    if spec.eval_source:
        evaluation = _load_frame(resolve_data(spec.eval_source, "dataset.eval_source"), spec, spec.split,
                                 "dataset.eval_source")
    elif spec.eval_split:
        evaluation = _load_frame(train_location, spec, spec.eval_split, "dataset.eval_split")
    else:
        shuffled = train.sample(frac=1.0, random_state=spec.seed).reset_index(drop=True)
        n_eval = max(1, round(len(shuffled) * spec.resolved_eval_fraction))
        evaluation, train = shuffled.iloc[:n_eval], shuffled.iloc[n_eval:]
    names, to_id = _label_names(train[spec.label], known_names)
    unseen = set(evaluation[spec.label].unique()) - set(to_id)
    if unseen:
        raise HpsearchError(
            f"dataset: the eval set has labels the training set lacks: {sorted(map(str, unseen))}"
        )
    if len(names) < 2:
        raise HpsearchError(f"dataset.label: column {spec.label!r} has a single label {names}; a classifier needs two or more")

    def finish(frame: pd.DataFrame, cap: int | None) -> pd.DataFrame:
        frame = frame.sample(frac=1.0, random_state=spec.seed).head(cap)
        return frame.assign(labels=frame[spec.label].map(to_id)).reset_index(drop=True)

    return finish(train, spec.max_train_samples), finish(evaluation, spec.max_eval_samples), names


def cache_key(spec: DatasetSpec, model_reference: str) -> str:
    identity: dict = {"dataset": spec.model_dump(mode="json"), "model": model_reference, "v": 1}
    for field in ("source", "eval_source"):
        reference = getattr(spec, field)
        location = resolve_data(reference, f"dataset.{field}") if reference else None
        if location is not None and location.path is not None:
            stat = location.path.stat()
            identity[field] = [str(location.path.resolve()), stat.st_size, stat.st_mtime_ns]
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def prepare_data(spec: DatasetSpec, model_reference: str, tokenizer, cache_dir: Path) -> PreparedData:
    """Load the tokenized train and eval sets from the cache, building them first if needed."""
    from datasets import load_from_disk

    target = cache_dir / f"data-{cache_key(spec, model_reference)}"
    if not (target / LABEL_FILE).is_file():
        _build_cache(spec, model_reference, tokenizer, target)
    saved = load_from_disk(str(target))
    names = json.loads((target / LABEL_FILE).read_text())
    return PreparedData(train=saved["train"], eval=saved["eval"], label_names=names)


def _build_cache(spec: DatasetSpec, model_reference: str, tokenizer, target: Path) -> None:
    from datasets import Dataset, DatasetDict

    train, evaluation, names = _split(spec)

    def tokenize(batch: dict) -> dict:
        pair = batch[spec.text_pair] if spec.text_pair else None
        texts = [str(t) for t in batch[spec.text]]
        pairs = [str(t) for t in pair] if pair is not None else None
        return tokenizer(texts, pairs, truncation=True, max_length=spec.max_length)

    def encode(frame: pd.DataFrame) -> Dataset:
        dataset = Dataset.from_pandas(frame, preserve_index=False)
        drop = [c for c in dataset.column_names if c != "labels"]
        return dataset.map(tokenize, batched=True, remove_columns=drop)

    encoded_eval = encode(evaluation)
    # Eval order does not change the metrics; sorted by length, each batch pads to a similar size.
    lengths = [len(ids) for ids in encoded_eval["input_ids"]]
    encoded_eval = encoded_eval.select(sorted(range(len(lengths)), key=lengths.__getitem__))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        DatasetDict({"train": encode(train), "eval": encoded_eval}).save_to_disk(str(staging))
        (staging / LABEL_FILE).write_text(json.dumps(names))
        # A rename is atomic: another worker building the same cache at once sees all or nothing.
        os.rename(staging, target)
    except OSError:
        if not (target / LABEL_FILE).is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
