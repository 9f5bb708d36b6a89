"""A data file read as a table, and its columns checked against the spec's dataset section.

Used by the checks run before anything is written (only the first rows) and by the data cache.
csv/tsv/json/jsonl/parquet are read here; a task's own formats (CoNLL) by the task.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hpsearch.errors import SpecError
from hpsearch.spec.location import DATA_SUFFIXES
from hpsearch.tasks import TASKS, DatasetBase


def read_file(
    path: Path, dataset: DatasetBase, key: str, n_rows: int | None = None
) -> pd.DataFrame:
    """A data file as a DataFrame (its first `n_rows` if given), read as the dataset's task does."""
    task_reader = TASKS[dataset.task].file_readers.get(path.suffix)
    if task_reader is not None:
        frame = task_reader(path, dataset, key)
        return frame if n_rows is None else frame.head(n_rows)
    kind = DATA_SUFFIXES[path.suffix]
    if kind == "csv":
        sep = "\t" if path.suffix == ".tsv" else ","
        return pd.read_csv(path, sep=sep, encoding=dataset.encoding, nrows=n_rows)
    if kind == "json":
        lines = path.suffix == ".jsonl"
        frame = pd.read_json(
            path, lines=lines, encoding=dataset.encoding, nrows=n_rows if lines else None
        )
        return frame if n_rows is None else frame.head(n_rows)
    frame = pd.read_parquet(path)
    return frame if n_rows is None else frame.head(n_rows)


def check_columns(frame: pd.DataFrame, dataset: DatasetBase, origin: str) -> None:
    """The columns the task reads are in the frame and hold what it trains on."""
    task = TASKS[dataset.task]
    for key, column in task.columns(dataset).items():
        if column not in frame.columns:
            raise SpecError(
                f"{key}: no column {column!r} in {origin}; its columns are "
                f"{', '.join(map(str, frame.columns))}"
            )
    task.check_frame(frame, dataset, origin)
