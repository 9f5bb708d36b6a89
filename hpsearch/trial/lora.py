"""LoRA adapters through PEFT: added to a trial's model, saved alone, merged back for deployment.

The pretrained weights stay frozen; low-rank updates of the target modules train, and so do the
modules the checkpoint does not hold (a classifier's or tagger's new head), fully. What is kept of
a trial is the adapter and that head (megabytes); `merge_adapter` folds them into the pretrained
weights for a model that `pipeline()` loads with no PEFT installed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hpsearch.errors import HpsearchError, first_line
from hpsearch.tasks import Task

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_FILES = (ADAPTER_CONFIG, "adapter_model.safetensors", "adapter_model.bin")


def add_adapters(model, lora: dict[str, Any], task: Task, fresh_modules: list[str]):
    """`model` wrapped with LoRA adapters as `lora` (PeftSpec.resolve) says; the fresh modules
    (the new head) train fully and are saved with the adapter."""
    from peft import LoraConfig, get_peft_model

    target = (
        lora["target_modules"] if lora["target_modules"] is not None else default_targets(model)
    )
    config = LoraConfig(
        task_type=task.peft_task_type,
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=target,
        bias=lora["bias"],
        modules_to_save=fresh_modules or None,
    )
    try:
        with _wrapping_quietly():
            return get_peft_model(model, config)
    except ValueError:  # target modules the model does not have
        raise ValueError(
            f"peft.target_modules: {target} matches no module of this {model.config.model_type} "
            f"model; its linear layers are named {', '.join(linear_names(model))} (or use "
            "all-linear)"
        ) from None


@contextmanager
def _wrapping_quietly() -> Iterator[None]:
    """PEFT wrapping a model reads its `is_gradient_checkpointing`, which transformers 5 deprecates
    with a FutureWarning at every wrap (PEFT's to change, not ours): that warning is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield


def linear_names(model) -> list[str]:
    import torch

    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
    )


def check_adapters(factory, spec) -> None:
    """Every target_modules the spec fixes or searches exists in the model: a SpecError before
    any trial, rather than every trial failing."""
    from hpsearch.errors import SpecError
    from hpsearch.spec import PEFT_PREFIX, ChoiceParam, param_ends

    declared = spec.peft.target_modules
    # The other searched values at their low ends: only the modules decide whether PEFT finds them.
    low = {name: param_ends(param)[0] for name, param in spec.peft.searched().items()}
    for candidate in declared.choices if isinstance(declared, ChoiceParam) else [declared]:
        lora = spec.peft.resolve({**low, f"{PEFT_PREFIX}target_modules": candidate})
        try:
            factory.build(seed=0, knobs={}, lora=lora)
        except ValueError as e:
            raise SpecError(first_line(e)) from None


def default_targets(model) -> list[str] | str:
    """PEFT's target modules for the architecture (query and value for BERT); every linear layer
    for one PEFT has no default for."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    return DEFAULTS.get(model.config.model_type, "all-linear")


def is_adapter(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def save_adapter(model, directory: Path) -> None:
    """The adapter and the fully trained head (PEFT's files), and the base model's config (its
    label names), without the pretrained weights."""
    model.save_pretrained(directory)
    model.get_base_model().config.save_pretrained(directory)


def make_deployable(model_dir: Path, spec, adapter_only: bool) -> None:
    """Turn an exported best model into what the user ships, in place: a LoRA adapter merged into
    the pretrained weights (or, with `adapter_only`, left as the adapter alone)."""
    from hpsearch.spec import resolve_model

    adapter = (model_dir / ADAPTER_CONFIG).is_file()
    if adapter_only and not adapter:
        raise HpsearchError(
            "--adapter: the best model is a full fine-tune, not a LoRA adapter (the study has "
            "no peft: section); export it without --adapter"
        )
    if not adapter or adapter_only:
        return
    merged = model_dir / ".merged"
    merge_adapter(model_dir, resolve_model(spec.model), spec.task_spec, merged)
    for name in ADAPTER_FILES:
        (model_dir / name).unlink(missing_ok=True)
    for path in merged.iterdir():
        path.replace(model_dir / path.name)
    merged.rmdir()


def merge_adapter(adapter_dir: Path, base_location, task: Task, out_dir: Path) -> None:
    """Write into `out_dir` the pretrained model of `base_location` with the adapter of
    `adapter_dir` merged in: plain transformers weights, loadable without PEFT."""
    from peft import PeftModel
    from transformers import AutoConfig

    from hpsearch.trial.classes import transformers_class
    from hpsearch.trial.model import source_of

    auto_class = transformers_class(task.model_class)
    config = AutoConfig.from_pretrained(adapter_dir)  # the label names the trial trained with
    try:
        base = auto_class.from_pretrained(source_of(base_location), config=config)
        with _wrapping_quietly():
            merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    except (OSError, ValueError) as e:
        raise HpsearchError(
            f"cannot merge the adapter into {base_location.reference}: {first_line(e)}"
        ) from None
    merged.save_pretrained(out_dir)
