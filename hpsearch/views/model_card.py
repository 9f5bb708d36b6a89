"""The model card (README.md) of an exported model or of a final training: what was trained, from
what, on what data, with which searched and fixed values, and what it measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna

from hpsearch.study import Confidence
from hpsearch.views.status import describe_trial_record

ADAPTER_CONFIG = "adapter_config.json"


# PEFT's adapter_config.json keys an exported card describes, and the PEFT types that fold into
# the pretrained weights (export writes those merged; the others stay an adapter).
ADAPTER_KEYS = (
    "peft_type",
    "r",
    "lora_alpha",
    "lora_dropout",
    "use_dora",
    "target_modules",
    "bias",
    "modules_to_save",
    "num_virtual_tokens",
)
MERGEABLE_PEFT_TYPES = ("LORA", "IA3")


def read_adapter_settings(model_dir: Path) -> dict[str, Any] | None:
    """A PEFT adapter's method and settings (PEFT's adapter_config.json), or None."""
    path = model_dir / ADAPTER_CONFIG
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    return {key: config.get(key) for key in ADAPTER_KEYS}


def adapter_is_mergeable(model_dir: Path) -> bool:
    """The adapter in `model_dir` folds into the pretrained weights (LoRA, DoRA, IA3); prompt and
    prefix tuning's virtual tokens do not."""
    settings = read_adapter_settings(model_dir)
    return settings is not None and settings["peft_type"] in MERGEABLE_PEFT_TYPES


def _describe_method(adapter: dict[str, Any]) -> tuple[str, str]:
    """The method's name and one sentence on what trained."""
    modules = adapter["target_modules"]
    modules = ", ".join(sorted(modules)) if isinstance(modules, list) else modules
    head = ", ".join(sorted(set(adapter["modules_to_save"] or []))) or "none"
    tokens = adapter["num_virtual_tokens"]
    kind = adapter["peft_type"] or "LORA"
    if kind == "LORA":
        name = "DoRA" if adapter["use_dora"] else "LoRA"
        what = (
            f"{name} adapters (rank {adapter['r']}, alpha {adapter['lora_alpha']}, dropout "
            f"{adapter['lora_dropout']}) on `{modules}`"
        )
    elif kind == "IA3":
        name, what = "IA3", f"IA3 scaling vectors on `{modules}`"
    elif kind == "PROMPT_TUNING":
        name, what = "prompt tuning", f"{tokens} virtual tokens prepended to the input"
    else:
        name, what = "prefix tuning", f"{tokens} virtual tokens of keys and values in every layer"
    return name, f"{what}; new modules trained fully: `{head}`."


def _describe_adapter(spec, adapter: dict[str, Any] | None, form: str) -> str:
    if adapter is None:
        return ""
    name, trained = _describe_method(adapter)
    if form == "merged":
        return (
            f"\n\n## {name}\n{trained} The adapters are merged into the weights here: no PEFT is "
            "needed to load them.\n"
        )
    model_class = spec.task_spec.model_class
    here = "path/to/this/directory"
    mergeable = adapter["peft_type"] in MERGEABLE_PEFT_TYPES
    why = (
        ""
        if mergeable
        else f" Virtual tokens cannot be merged into weights, so {name} is always exported so."
    )
    load = (
        f'model = PeftModel.from_pretrained(base, "{here}").merge_and_unload()\n'
        if mergeable
        else f'model = PeftModel.from_pretrained(base, "{here}")\n'
        f'pipe = pipeline("{spec.task_spec.pipeline_task}", model=model, tokenizer="{here}")\n'
    )
    imports = f"from transformers import {model_class}" + ("" if mergeable else ", pipeline")
    return (
        f"\n\n## {name}\n{trained} This directory holds the adapter alone (with PEFT "
        f"installed){why} Load it onto `{spec.model}`:\n\n"
        "```python\n"
        "from peft import PeftModel\n"
        f"{imports}\n"
        f'base = {model_class}.from_pretrained("BASE_MODEL_DIR", config="{here}")\n'
        f"{load}"
        "```\n"
    )


def model_card(
    name: str,
    spec,
    best: dict,
    final: dict | None = None,
    adapter: dict[str, Any] | None = None,
    form: str = "full",
) -> str:
    """The README.md of an exported model: trial `best`'s (describe_trial_record), or, with `final`
    (a final training's record, trial.final_record, plus its "fixed" values), that training's;
    `adapter` (read_adapter_settings) and `form` (full, merged, adapter) describe a PEFT model."""
    task = spec.task_spec
    params = "\n".join(f"| {k} | {v} |" for k, v in best["params"].items())
    fixed_values = spec.training if final is None else final.get("fixed", spec.training)
    fixed = "\n".join(f"| {k} | {v} |" for k, v in fixed_values.items()) or "| (none) | |"
    measured = best["metrics"] if final is None else final["metrics"]
    tag = f"pipeline_tag: {task.pipeline_task}\n" if task.pipeline_task else ""
    sureness = f"; {Confidence(**best['confidence']).describe()}" if best.get("confidence") else ""
    which = "its best evaluation" if spec.objective.value == "best" else "last evaluation"
    if final is None:
        title = "best model of an hpsearch study"
        about = f"""A {spec.task} model fine-tuned from `{spec.model}` on `{spec.dataset.source}`
({task.describe_data(spec.dataset)}), the best of {spec.budget.n_trials} trials searched by hpsearch
for {spec.objective.direction} `{best["metric"]}`: **{best["value"]:.4f}** (trial {best["number"]},
seed {best["seed"]}){sureness}."""
        measured_title = f"Evaluation metrics of this trial ({which})"
    else:
        title = f"final training of trial {final['trial']} of an hpsearch study"
        about = _describe_final_training(spec, final, sureness)
        measured = {k: v for k, v in measured.items() if k.removeprefix("eval_") in task.metrics}
        measured_title = f"Evaluation metrics of this training ({which})"
    metrics = "\n".join(
        f"| {k} | {v:.4f} |" for k, v in sorted(measured.items()) if isinstance(v, float)
    )
    return f"""---
library_name: transformers
{tag}tags:
- hpsearch
- {spec.task}
---
# {name}: {title}

{about}

```python
{task.usage("path/to/this/directory")}
```

## Hyperparameters (searched)
| name | value |
| --- | --- |
{params}

## Fixed training arguments and knobs
| name | value |
| --- | --- |
{fixed}

## {measured_title}
| metric | value |
| --- | --- |
{metrics}
{_describe_test_scores(best if final is None else final)}{_describe_adapter(spec, adapter, form)}"""


def _describe_test_scores(record: dict) -> str:
    """The card's section on the held-out test set (dataset.test_*), where the model was scored."""
    scores = record.get("test_scores")
    if not scores:
        return ""
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in scores.items())
    return f"""
## Held-out test set
Scored once on data no trial saw or was chosen by (dataset.test_*).

| metric | value |
| --- | --- |
{rows}
"""


def final_model_card(
    study: optuna.Study, spec, plan, record: dict, adapter: dict[str, Any] | None = None
) -> str:
    """The card of a final training (`record`, trial.final_record) of `plan` (study.FinalPlan) in
    `study`, searched by `spec`: the trial's parameters and confidence, the training's data and
    metrics; `adapter` (read_adapter_settings), the adapter it was saved as, where its method
    cannot be merged."""
    trial = describe_trial_record(study, spec, study.trials[plan.trial])
    final = {**record, "fixed": plan.fixed}
    return model_card(study.study_name, plan.spec, trial, final, adapter=adapter, form="adapter")


def _describe_final_training(spec, final: dict, sureness: str) -> str:
    task = spec.task_spec
    searched = f"{spec.budget.n_trials} trials searched for {spec.objective.direction}"
    trained = f"{describe_epochs(final['epochs'])} ({final['n_steps']} optimizer steps)"
    return (
        f"A {spec.task} model fine-tuned from `{spec.model}` on `{spec.dataset.source}`\n"
        f"({task.describe_data(spec.dataset)}) by `hpsearch train`: the configuration and seed "
        f"({final['seed']})\n"
        f"of trial {final['trial']}, one of {searched} `{final['metric']}`, trained again\n"
        f"on {_describe_rows(spec, final)} for {trained}.\n"
        f"On the search's eval set ({final['n_eval_examples']} examples) it reached "
        f"**{final['value']:.4f}**{_describe_interval(final)};\n"
        f"the trial recorded {_describe_trial_value(final)}{sureness}."
    )


def describe_epochs(epochs: float) -> str:
    return f"{epochs:g} epoch{'' if epochs == 1 else 's'}"


def _describe_rows(spec, final: dict) -> str:
    """'all 270 training examples' or '64 training examples (the search's max_train_samples)'."""
    rows = f"{final['n_train_examples']} training examples"
    if final["full_data"]:
        return f"all {rows} (the search's cap of max_train_samples dropped)"
    cap = spec.dataset.max_train_samples
    return (
        f"{rows} (the search's data, max_train_samples {cap})"
        if cap
        else f"{rows} (all, as in the search)"
    )


def _describe_interval(final: dict) -> str:
    interval = final.get("interval")
    return f" (95% CI {interval[0]:.4f}-{interval[1]:.4f})" if interval else ""


def _describe_trial_value(final: dict) -> str:
    if final.get("trial_value") is None:
        return "no value"
    return f"{final['trial_value']:.4f} ({final['value'] - final['trial_value']:+.4f} here)"
