"""A data file read as a table, and its columns checked against the spec's dataset section.

Used by the checks run before anything is written (only the first rows) and by the data cache.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hpsearch.errors import SpecError
from hpsearch.spec.location import DATA_SUFFIXES
from hpsearch.spec.schema import DatasetSpec


def read_file(path: Path, encoding: str, n_rows: int | None = None) -> pd.DataFrame:
    """A csv/tsv/json/jsonl/parquet file as a DataFrame (its first `n_rows` when given)."""
    kind = DATA_SUFFIXES[path.suffix]
    if kind == "csv":
        sep = "\t" if path.suffix == ".tsv" else ","
        return pd.read_csv(path, sep=sep, encoding=encoding, nrows=n_rows)
    if kind == "json":
        lines = path.suffix == ".jsonl"
        frame = pd.read_json(path, lines=lines, encoding=encoding, nrows=n_rows if lines else None)
        return frame if n_rows is None else frame.head(n_rows)
    frame = pd.read_parquet(path)
    return frame if n_rows is None else frame.head(n_rows)


def check_columns(frame: pd.DataFrame, spec: DatasetSpec, key: str) -> None:
    wanted = {"text": spec.text, "label": spec.label, "text_pair": spec.text_pair}
    for field, column in wanted.items():
        if column is not None and column not in frame.columns:
            raise SpecError(
                f"dataset.{field}: no column {column!r} in {key}; its columns are "
                f"{', '.join(map(str, frame.columns))}"
            )
    if pd.api.types.is_float_dtype(frame[spec.label].dropna()):
        raise SpecError(
            f"dataset.label: column {spec.label!r} holds floats; hpsearch fine-tunes classifiers, "
            "so use integer or string labels"
        )
