"""The best model as a directory `transformers.pipeline` loads, with a model card.

Weights, card and message all describe one trial: the one the kept archive names in its
TRIAL_FILE, which must be the one the study's best-model pointer names.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import download_artifact

from hpsearch.errors import HpsearchError, StudyError
from hpsearch.storage import TRIAL_FILE, best_model_pointer
from hpsearch.study import Confidence, stored_spec
from hpsearch.views.status import describe_trial_record


def export_best_model(storage, name: str, artifact_store, out_dir: Path,
                      finish: Callable[[Path, Any], None] | None = None) -> dict:
    """Unpack the study's best model into `out_dir` (which must be new or empty) and add a card;
    returns the record of the trial whose model it is. `finish(model_dir, spec)` makes the
    unpacked model deployable (merges a LoRA adapter) before the card is written; a failure
    leaves nothing in `out_dir`."""
    spec = stored_spec(storage, name)  # an unknown study is one clear line, before anything else
    study = optuna.load_study(study_name=name, storage=storage)
    pointer = best_model_pointer(study)
    if pointer is None:
        raise StudyError(f"study {name!r} has no best model yet; run it first (hpsearch run --study {name})")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise HpsearchError(f"{out_dir} exists and is not an empty directory; name a new one")
    with tempfile.TemporaryDirectory(prefix="hpsearch-export-") as scratch:
        archive = Path(scratch) / "model.zip"
        try:
            download_artifact(artifact_store=artifact_store, artifact_id=pointer["artifact_id"], file_path=str(archive))
        except Exception as e:  # noqa: BLE001 - each artifact store raises its own not-found type
            raise HpsearchError(
                f"the best model's file (artifact {pointer['artifact_id']}) is not in the artifact store: "
                f"{e}; point HPSEARCH_ARTIFACTS at the store the workers wrote to"
            ) from None
        staging = Path(scratch) / "model"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
        held = _trial_held(staging, pointer)
        record = describe_trial_record(study, spec, study.trials[held])
        if record["value"] is None:  # kept a moment ago; its worker has not recorded the value yet
            record["value"] = pointer["value"]
        adapter = read_adapter_settings(staging)
        if finish is not None:
            finish(staging, spec)
        form = "adapter" if (staging / ADAPTER_CONFIG).is_file() else "merged" if adapter else "full"
        (staging / "README.md").write_text(model_card(name, spec, record, adapter, form))
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if out_dir.exists():
            out_dir.rmdir()
        shutil.move(str(staging), out_dir)
    return record


def _trial_held(model_dir: Path, pointer: dict) -> int:
    """The trial whose weights the archive holds; it must be the one the pointer names."""
    marker = model_dir / TRIAL_FILE
    held = json.loads(marker.read_text())["trial"] if marker.is_file() else pointer["trial"]
    if held != pointer["trial"]:
        raise HpsearchError(
            f"the best model's archive holds trial {held} but the study points at trial {pointer['trial']}; "
            "the storage and the artifact store disagree (was HPSEARCH_ARTIFACTS changed?)"
        )
    return held


ADAPTER_CONFIG = "adapter_config.json"


def read_adapter_settings(model_dir: Path) -> dict[str, Any] | None:
    """A LoRA adapter's rank, alpha, dropout and modules (PEFT's adapter_config.json), or None."""
    path = model_dir / ADAPTER_CONFIG
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    return {key: config.get(key) for key in ("r", "lora_alpha", "lora_dropout", "target_modules", "bias",
                                             "modules_to_save")}


def _describe_adapter(spec, adapter: dict[str, Any] | None, form: str) -> str:
    if adapter is None:
        return ""
    modules = adapter["target_modules"]
    modules = ", ".join(sorted(modules)) if isinstance(modules, list) else modules
    head = ", ".join(sorted(set(adapter["modules_to_save"] or []))) or "none"
    trained = (f"LoRA adapters (rank {adapter['r']}, alpha {adapter['lora_alpha']}, dropout "
               f"{adapter['lora_dropout']}) on `{modules}`; new modules trained fully: `{head}`.")
    if form == "merged":
        return f"\n\n## LoRA\n{trained} The adapters are merged into the weights here: no PEFT is needed to load them.\n"
    return (f"\n\n## LoRA\n{trained} This directory holds the adapter alone (with PEFT installed); load it "
            f"onto `{spec.model}`:\n\n```python\nfrom peft import PeftModel\n"
            f"from transformers import {spec.task_spec.model_class}\n"
            f'base = {spec.task_spec.model_class}.from_pretrained("BASE_MODEL_DIR", config="path/to/this/directory")\n'
            'model = PeftModel.from_pretrained(base, "path/to/this/directory").merge_and_unload()\n```\n')


def model_card(name: str, spec, best: dict, adapter: dict[str, Any] | None = None, form: str = "full") -> str:
    task = spec.task_spec
    params = "\n".join(f"| {k} | {v} |" for k, v in best["params"].items())
    fixed = "\n".join(f"| {k} | {v} |" for k, v in spec.training.items()) or "| (none) | |"
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(best["metrics"].items()) if isinstance(v, float))
    tag = f"pipeline_tag: {task.pipeline_task}\n" if task.pipeline_task else ""
    sureness = f"; {Confidence(**best['confidence']).describe()}" if best.get("confidence") else ""
    return f"""---
library_name: transformers
{tag}tags:
- hpsearch
- {spec.task}
---
# {name}: best model of an hpsearch study

A {spec.task} model fine-tuned from `{spec.model}` on `{spec.dataset.source}`
({task.describe_data(spec.dataset)}), the best of {spec.budget.n_trials} trials searched by hpsearch
for {spec.objective.direction} `{best['metric']}`: **{best['value']:.4f}** (trial {best['number']},
seed {best['seed']}){sureness}.

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

## Evaluation metrics of this trial ({"its best evaluation" if spec.objective.value == "best" else "last evaluation"})
| metric | value |
| --- | --- |
{metrics}
{_describe_adapter(spec, adapter, form)}"""
