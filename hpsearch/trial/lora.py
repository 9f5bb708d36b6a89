"""LoRA adapters through PEFT: added to a trial's model and saved alone.

The pretrained weights stay frozen; low-rank updates of the target modules train, and so do the
modules the checkpoint does not hold (a classifier's or tagger's new head), fully. What is kept of
a trial is the adapter and that head; hpsearch.deploy.merge folds them into the pretrained weights
for a model that `pipeline()` loads with no PEFT installed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hpsearch.tasks import Task


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
        use_dora=lora.get("use_dora", False),
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
