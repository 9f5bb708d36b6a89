"""The TrainingArguments of a trial: what hpsearch sets itself, the defaults, and the spec's values
checked against transformers before any trial runs."""

from __future__ import annotations

import dataclasses
import difflib
import tempfile
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from hpsearch.errors import SpecError, first_line
from hpsearch.spec import GENERATION_SETTINGS, MODEL_KNOBS, StudySpec, corner_values, split_params
from hpsearch.tasks import DEFAULT_TASK, TASKS, Task
from hpsearch.trial.classes import transformers_class
from hpsearch.trial.distributed import group_arguments
from hpsearch.trial.gpu_defaults import (
    COLLATOR_SETTINGS,
    collator_defaults,
    probe_device,
    training_defaults,
    without_collator_settings,
)
from hpsearch.trial.precision import auto_precision

# TrainingArguments that hpsearch sets itself; a spec may not search or fix them.
CONTROLLED_ARGS = frozenset(
    {
        "output_dir",
        "eval_strategy",
        "eval_steps",
        "save_strategy",
        "save_steps",
        "save_total_limit",
        "logging_strategy",
        "logging_steps",
        "logging_dir",
        "logging_nan_inf_filter",
        "report_to",
        "disable_tqdm",
        "seed",
        "do_train",
        "do_eval",
        "load_best_model_at_end",
        "metric_for_best_model",
        "greater_is_better",
        "push_to_hub",
        "hub_model_id",
        "run_name",
        "eval_on_start",
        "remove_unused_columns",
        "label_names",
        # Seq2seq evaluation generates with the spec's generation settings (num_beams,
        # max_new_tokens, ...).
        "predict_with_generate",
        "generation_config",
        "generation_max_length",
        "generation_num_beams",
    }
)
# Not train_sampling_strategy="group_by_length": its steps are faster, but its batches of one length
# cost accuracy after an epoch (BENCHMARKS.md, "Head-to-head": tried and rejected). A GPU's own
# defaults come on top (trial/gpu_defaults.py).
DEFAULT_ARGS = {"per_device_eval_batch_size": 64}


def build_training_args(
    values: dict[str, Any],
    seed: int,
    output_dir: Path,
    task: Task = TASKS[DEFAULT_TASK],
    *,
    spec: StudySpec | None = None,
) -> TrainingArguments:
    """The task's TrainingArguments class with the spec's values, hpsearch's defaults for this
    device (`spec`: the study's, for those that must be the same for all its trials), its own.
    The collator's settings among `values` (pad_to_multiple_of) are left to make_collator."""
    values = without_collator_settings(values)
    return transformers_class(task.arguments_class)(
        **{
            **DEFAULT_ARGS,
            **auto_precision(values),
            **training_defaults(values, probe_device(), spec),
            **values,
            **task.arguments,
            **group_arguments(),
        },
        output_dir=str(output_dir),
        seed=seed,
        # Evaluation and logging are driven by OptunaPruningCallback; nothing is written to disk.
        eval_strategy="no",
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_nan_inf_filter=False,
    )


def make_collator(task: Task, tokenizer, model, values: dict[str, Any]):
    """The task's data collator, padding to a multiple of 8 on a GPU unless `values` say."""
    kwargs = {**collator_defaults(values, probe_device()), **task.collator_kwargs(model)}
    collate = transformers_class(task.collator_class)(tokenizer, **kwargs)
    if not task.metadata_columns:
        return collate
    return lambda rows: collate(task.model_inputs(rows))


def check_training_args(spec: StudySpec) -> None:
    """Every searched or fixed name is a TrainingArguments field or a model knob, and every value is
    one TrainingArguments accepts at each end of its range; a SpecError says which is not."""
    task = spec.task_spec
    arguments_class = transformers_class(task.arguments_class)
    fields = {f.name for f in dataclasses.fields(arguments_class) if f.init}
    others = [*MODEL_KNOBS, *COLLATOR_SETTINGS]
    if task.generates:
        others += GENERATION_SETTINGS
    for section, names in (("search_space", spec.search_space), ("training", spec.training)):
        for name in names:
            if name in others:
                continue
            if name in CONTROLLED_ARGS:
                fix = (
                    "; search or fix the generation settings instead"
                    if name.startswith(("generation", "predict"))
                    else ""
                )
                raise SpecError(
                    f"{section}.{name}: hpsearch sets this training argument itself; remove it{fix}"
                )
            if name not in fields:
                close = difflib.get_close_matches(name, [*fields, *others], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                generation = " nor a generation setting" if task.generates else ""
                raise SpecError(
                    f"{section}.{name}: not a {task.arguments_class} field nor a model knob "
                    f"({', '.join(MODEL_KNOBS)}){generation}{hint}"
                )
    fixed = split_params(spec.training).arguments
    with tempfile.TemporaryDirectory() as scratch:
        _try_args(fixed, Path(scratch), "training", spec)
        for corner in corner_values(spec.searched_params, spec.fixed_values):
            searched = split_params(corner).arguments
            _try_args({**fixed, **searched}, Path(scratch), "search_space", spec, searched)


def _try_args(
    values: dict, scratch: Path, section: str, spec: StudySpec, searched: dict | None = None
) -> None:
    try:
        collator_defaults(values, probe_device())
        build_training_args(values, seed=0, output_dir=scratch, task=spec.task_spec, spec=spec)
    except (ValueError, TypeError) as e:
        where = (
            section
            if not searched
            else f"{section} (at {', '.join(f'{k}={v}' for k, v in searched.items())})"
        )
        raise SpecError(f"{where}: {first_line(e)}") from None
