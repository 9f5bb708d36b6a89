"""PEFT methods besides LoRA: IA3, prompt tuning and prefix tuning, added to a trial's model.

LoRA (and DoRA, a LoRA option) stays in lora.py; this module picks the method a trial drew and
builds its PEFT config. Each method saves alone, as LoRA does (the method's parameters and the
task's new head); IA3 scales activations by learned vectors and folds into the weights like LoRA,
while prompt and prefix tuning add virtual tokens that no weight can hold, so their export stays an
adapter that PEFT loads onto the base model.
"""

from __future__ import annotations

from typing import Any

from hpsearch.errors import first_line
from hpsearch.tasks import Task
from hpsearch.trial.lora import _wrapping_quietly, linear_names
from hpsearch.trial.lora import add_adapters as add_lora


def add_adapters(model, settings: dict[str, Any], task: Task, fresh_modules: list[str]):
    """`model` wrapped with the PEFT method `settings` (PeftSpec.resolve) names; the fresh
    modules (the new head) train fully and are saved with the method's parameters."""
    from peft import get_peft_model

    method = settings["method"]
    if method == "lora":
        return add_lora(model, settings, task, fresh_modules)
    config = _config(model, settings, task, fresh_modules)
    try:
        with _wrapping_quietly():
            return get_peft_model(model, config)
    except ValueError as e:
        raise ValueError(_refusal(model, settings, e)) from None


def _config(model, settings: dict[str, Any], task: Task, fresh_modules: list[str]):
    from peft import IA3Config, PrefixTuningConfig, PromptTuningConfig

    common = {
        "task_type": task.peft_task_type,
        "modules_to_save": fresh_modules or None,
    }
    if settings["method"] == "ia3":
        target = settings["target_modules"]
        return IA3Config(
            **common, target_modules=target, feedforward_modules=_feedforward(model, target)
        )
    prompt_class = {"prompt_tuning": PromptTuningConfig, "prefix_tuning": PrefixTuningConfig}
    return prompt_class[settings["method"]](
        **common, num_virtual_tokens=settings["num_virtual_tokens"]
    )


def _feedforward(model, target) -> list[str] | None:
    """IA3 scales a feed-forward layer's input, any other target's output: which of the spec's
    `target` are feed-forward layers, by PEFT's table for the architecture (None: PEFT's own
    choice of both)."""
    from peft.utils import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD

    if target is None:
        return None
    known = FEEDFORWARD.get(model.config.model_type) or []
    if target == "all-linear":
        return known
    return [name for name in known if name in target]


def _refusal(model, settings: dict[str, Any], error: Exception) -> str:
    """PEFT's refusal of a method for this model, as one line that says what to change."""
    kind, method = model.config.model_type, settings["method"]
    if method == "ia3" and settings.get("target_modules") is None:
        return (
            f"peft.target_modules: ia3 has no default modules for this {kind} model; name them "
            f"(its linear layers are {', '.join(linear_names(model))})"
        )
    if method == "ia3":
        return (
            f"peft.target_modules: {settings['target_modules']} matches no module of this {kind} "
            f"model; its linear layers are named {', '.join(linear_names(model))}"
        )
    return f"peft.method: {method} cannot wrap this {kind} model: {first_line(error)}"


def check_adapters(factory, spec) -> None:
    """Every method and target_modules the spec fixes or searches can wrap the model and run it
    forward: a SpecError before any trial, rather than every trial failing (prefix tuning needs a
    model that takes past key values, which PEFT finds out only at the first forward pass)."""
    from hpsearch.errors import SpecError
    from hpsearch.spec import PEFT_PREFIX, ChoiceParam, param_ends

    low = {name: param_ends(param)[0] for name, param in spec.peft.searched().items()}
    declared = spec.peft.target_modules
    modules = declared.choices if isinstance(declared, ChoiceParam) else [declared]
    for method in spec.peft.methods:
        for candidate in modules if method in ("lora", "ia3") else [None]:
            params = {**low, f"{PEFT_PREFIX}method": method}
            if candidate is not None:
                params[f"{PEFT_PREFIX}target_modules"] = candidate
            settings = spec.peft.resolve(params)
            try:
                model = factory.build(seed=0, knobs={}, lora=settings)
                _run_forward(model, spec.task_spec)
            except ValueError as e:
                message = first_line(e)
                if not message.startswith("peft."):
                    message = f"peft.method: {method} cannot run this {_kind(factory)} model: "
                    message += first_line(e)
                raise SpecError(message) from None


def _kind(factory) -> str:
    return getattr(factory.config, "model_type", "")


def _run_forward(model, task: Task) -> None:
    """One forward pass on a 4-token input: what PEFT checks only when a model runs."""
    import torch

    ids = torch.ones((1, 4), dtype=torch.long)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if task.model_class == "AutoModelForSeq2SeqLM":
        inputs["decoder_input_ids"] = ids
    with torch.no_grad():
        model.eval()(**inputs)


def is_mergeable(model) -> bool:
    """The model's PEFT method folds into the pretrained weights (LoRA, DoRA, IA3)."""
    return model.peft_config[model.active_adapter].peft_type.value in ("LORA", "IA3")
