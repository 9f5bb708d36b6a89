"""The checks of a spec that need the file system or transformers, run before the storage is touched.

spec.py has checked shapes and values; this checks that the model and data files exist, that the
columns are there, and that every searched or fixed training argument is one TrainingArguments
accepts, at each end of its range.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tempfile
from pathlib import Path

from hpsearch.data import check_columns, read_file
from hpsearch.errors import SpecError
from hpsearch.location import resolve_data, resolve_model
from hpsearch.search_space import corner_values, param_ends, split_params
from hpsearch.spec import MODEL_KNOBS, StudySpec


def check_spec(spec: StudySpec) -> None:
    model = resolve_model(spec.model)
    _check_data(spec)
    _check_training_args(spec)
    if model.path is not None:
        _check_knobs(spec, model.path)


def _check_data(spec: StudySpec) -> None:
    dataset = spec.dataset
    if dataset.eval_source and resolve_data(dataset.source, "dataset.source").hub_id:
        raise SpecError("dataset.eval_source: goes with a file source; for a hub dataset use eval_split")
    for key in ("source", "eval_source"):
        reference = getattr(dataset, key)
        location = resolve_data(reference, f"dataset.{key}") if reference else None
        if location is None or location.path is None:
            continue  # a hub dataset is checked when it is loaded
        if dataset.eval_split:
            raise SpecError("dataset.eval_split: names a hub split; for a file use eval_source or eval_fraction")
        try:
            head = read_file(location.path, dataset.encoding, n_rows=200)
        except UnicodeDecodeError:
            raise SpecError(
                f"dataset.encoding: {reference} is not {dataset.encoding}; set encoding: to the "
                "file's encoding (latin-1, say)"
            ) from None
        except (ValueError, OSError) as e:
            raise SpecError(f"dataset.{key}: cannot read {reference}: {str(e).splitlines()[0]}") from None
        check_columns(head, dataset, reference)


def _check_training_args(spec: StudySpec) -> None:
    from transformers import TrainingArguments

    from hpsearch.objective import CONTROLLED_ARGS

    fields = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    for section, names in (("search_space", spec.search_space), ("training", spec.training)):
        for name in names:
            if name in MODEL_KNOBS:
                continue
            if name in CONTROLLED_ARGS:
                raise SpecError(f"{section}.{name}: hpsearch sets this training argument itself; remove it")
            if name not in fields:
                close = difflib.get_close_matches(name, [*fields, *MODEL_KNOBS], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise SpecError(
                    f"{section}.{name}: not a TrainingArguments field nor a model knob "
                    f"({', '.join(MODEL_KNOBS)}){hint}"
                )
    fixed, _ = split_params(spec.training)
    with tempfile.TemporaryDirectory() as scratch:
        _try_args(fixed, Path(scratch), "training")
        for corner in corner_values(spec.search_space):
            searched, _ = split_params(corner)
            _try_args({**fixed, **searched}, Path(scratch), "search_space", searched)


def _try_args(values: dict, scratch: Path, section: str, searched: dict | None = None) -> None:
    from hpsearch.objective import build_training_args

    try:
        build_training_args(values, seed=0, output_dir=scratch)
    except (ValueError, TypeError) as e:
        where = section if not searched else f"{section} (at {', '.join(f'{k}={v}' for k, v in searched.items())})"
        raise SpecError(f"{where}: {str(e).splitlines()[0]}") from None


def _check_knobs(spec: StudySpec, model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    n_layers = config.get("num_hidden_layers") or config.get("n_layers")
    for value in _declared_values(spec, "freeze_layers"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (n_layers and value > n_layers):
            raise SpecError(f"freeze_layers: {value!r} is not a layer count of this model (0 to {n_layers})")
    for value in _declared_values(spec, "freeze_embeddings"):
        if not isinstance(value, bool):
            raise SpecError(f"freeze_embeddings: {value!r} is not true or false")
    for value in _declared_values(spec, "dropout"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise SpecError(f"dropout: {value!r} is not a probability in [0, 1)")


def _declared_values(spec: StudySpec, name: str) -> list:
    """The fixed value of `name`, or the ends of its range, or its choices."""
    if name in spec.training:
        return [spec.training[name]]
    param = spec.search_space.get(name)
    return [] if param is None else param_ends(param)
