"""The checks of a spec that need the file system, run before the storage is touched.

schema.py has checked shapes and values; this checks that the model and data files exist, that the
columns the task reads are there (and CoNLL files parse), that generation settings are values
generate() takes, and that the model knobs fit the model. (Whether TrainingArguments accepts every
searched and fixed value is checked by `hpsearch.trial.arguments.check_training_args`, which needs
transformers.)
"""

from __future__ import annotations

import json
from pathlib import Path

from hpsearch.errors import SpecError, first_line
from hpsearch.spec.choice import model_choices
from hpsearch.spec.location import dataset_location, resolve_model
from hpsearch.spec.schema import StudySpec
from hpsearch.spec.search_space import param_ends
from hpsearch.spec.table import check_columns, read_file

# What each generation setting may be: (integer?, least value).
GENERATION_RULES = {
    "num_beams": (True, 1),
    "max_new_tokens": (True, 1),
    "no_repeat_ngram_size": (True, 0),
    "length_penalty": (False, None),
}


def check_sources(spec: StudySpec) -> None:
    """The model (each choice of a searched one) and data the spec names exist and fit together;
    a SpecError says what does not."""
    models = [resolve_model(reference) for reference in model_choices(spec)]
    translation = spec.augment.back_translation if spec.augment else None
    if translation is not None:  # a package or folder that is not there: refused now
        for key in ("model", "pivot_model"):
            resolve_model(getattr(translation, key), f"augment.back_translation.{key}")
    _check_data(spec)
    _check_generation(spec)
    for model in models:
        if model.path is None:
            continue
        try:
            _check_knobs(spec, model.path)
        except SpecError as e:
            if len(models) == 1:
                raise
            raise SpecError(f"{e.message} (model choice {model.reference})") from None


def _check_data(spec: StudySpec) -> None:
    dataset = spec.dataset
    if dataset.eval_source and dataset_location(dataset, "source").loaded_by_datasets:
        raise SpecError(
            "dataset.eval_source: goes with a file source; for a hub dataset use eval_split"
        )
    if dataset.test_source and dataset_location(dataset, "source").loaded_by_datasets:
        raise SpecError(
            "dataset.test_source: goes with a file source; for a hub dataset use test_split"
        )
    for key in ("source", "eval_source", "test_source"):
        location = dataset_location(dataset, key)
        if location is None or location.path is None:
            continue  # a hub dataset or a folder of splits is checked when it is loaded
        for split, instead in (
            ("eval", "eval_source or eval_fraction"),
            ("test", "test_source or test_fraction"),
        ):
            if getattr(dataset, f"{split}_split"):
                raise SpecError(
                    f"dataset.{split}_split: names a hub split; for a file use {instead}"
                )
        try:
            head = read_file(location.path, dataset, f"dataset.{key}", n_rows=200)
        except UnicodeDecodeError:
            raise SpecError(
                f"dataset.encoding: {location.reference} is not {dataset.encoding}; set encoding: "
                "to the file's encoding (latin-1, say)"
            ) from None
        except (ValueError, OSError) as e:
            raise SpecError(
                f"dataset.{key}: cannot read {location.reference}: {first_line(e)}"
            ) from None
        check_columns(head, dataset, location.reference)


def _check_generation(spec: StudySpec) -> None:
    """Generation settings hold values generate() takes, at each end of their ranges."""
    for name, (integer, least) in GENERATION_RULES.items():
        for value in _declared_values(spec, name):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if (
                not number
                or (integer and not isinstance(value, int))
                or (least is not None and value < least)
            ):
                kind = "an integer" if integer else "a number"
                bound = f" of at least {least}" if least is not None else ""
                raise SpecError(f"{name}: {value!r} is not {kind}{bound}")


def _check_knobs(spec: StudySpec, model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    n_layers = config.get("num_hidden_layers") or config.get("n_layers")
    for value in _declared_values(spec, "freeze_layers"):
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < 0
            or (n_layers and value > n_layers)
        ):
            raise SpecError(
                f"freeze_layers: {value!r} is not a layer count of this model (0 to {n_layers})"
            )
    for value in _declared_values(spec, "freeze_embeddings"):
        if not isinstance(value, bool):
            raise SpecError(f"freeze_embeddings: {value!r} is not true or false")
    for value in _declared_values(spec, "layer_lr_decay"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise SpecError(
                f"layer_lr_decay: {value!r} is not a factor in (0, 1] (each layer's rate is the "
                "rate of the layer above times it)"
            )
        if not n_layers:
            raise SpecError(
                "layer_lr_decay: the model's config names no layer count (num_hidden_layers)"
            )
    frozen = max(
        (v for v in _declared_values(spec, "freeze_layers") if isinstance(v, int)), default=0
    )
    for value in _declared_values(spec, "gradual_unfreezing"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(
                f"gradual_unfreezing: {value!r} is not a number of evaluations of at least 1 "
                "(one more layer trains after each such number of evaluations)"
            )
        if not n_layers:
            raise SpecError(
                "gradual_unfreezing: the model's config names no layer count (num_hidden_layers)"
            )
        if n_layers and frozen >= n_layers:
            raise SpecError(
                f"gradual_unfreezing: freeze_layers {frozen} freezes all {n_layers} layers; "
                "nothing is left to unfreeze"
            )
    for value in _declared_values(spec, "dropout"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise SpecError(f"dropout: {value!r} is not a probability in [0, 1)")


def check_trial_group(spec: StudySpec, gpus_per_trial: int | None) -> None:
    """What a trial trained by several processes cannot do: change which weights train as it goes
    (DistributedDataParallel syncs the gradients of the weights that trained when it was built)."""
    if gpus_per_trial is not None and _declared_values(spec, "gradual_unfreezing"):
        raise SpecError(
            f"gradual_unfreezing cannot train on --gpus-per-trial {gpus_per_trial} (DDP syncs "
            "only the weights that train from the start); remove one of them"
        )


def _declared_values(spec: StudySpec, name: str) -> list:
    """The fixed value of `name`, or the ends of its range, or its choices."""
    if name in spec.training:
        return [spec.training[name]]
    param = spec.search_space.get(name)
    return [] if param is None else param_ends(param)
