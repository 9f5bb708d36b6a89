"""A kept LoRA adapter made into what the user ships: merged into the pretrained weights, so that
`pipeline()` loads it with no PEFT installed (or, on request, left as the adapter alone).

Writing a model is deploy's job; trial/lora only adds and saves adapters during training, so the
trial package has no import back from its model builder to its adapters.
"""

from __future__ import annotations

from pathlib import Path

from hpsearch.errors import HpsearchError, first_line
from hpsearch.tasks import Task
from hpsearch.trial.classes import transformers_class
from hpsearch.trial.lora import _wrapping_quietly  # PEFT's wrapping warning, silenced here too
from hpsearch.trial.model import source_of
from hpsearch.views import ADAPTER_CONFIG

ADAPTER_FILES = (ADAPTER_CONFIG, "adapter_model.safetensors", "adapter_model.bin")


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
