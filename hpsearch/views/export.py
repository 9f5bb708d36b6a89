"""The best model as a directory `transformers.pipeline` loads, with a model card.

Weights, card and message all describe one trial: the one the kept archive names in its
TRIAL_FILE, which must be the one the study's best-model pointer names.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import optuna
from optuna.artifacts import download_artifact

from hpsearch.errors import HpsearchError, StudyError
from hpsearch.storage import TRIAL_FILE, best_model_pointer
from hpsearch.study import Confidence, stored_spec
from hpsearch.views.status import describe_trial_record


def export_best_model(storage, name: str, artifact_store, out_dir: Path) -> dict:
    """Unpack the study's best model into `out_dir` (which must be new or empty) and add a card;
    returns the record of the trial whose model it is."""
    spec = stored_spec(storage, name)  # an unknown study is one clear line, before anything else
    study = optuna.load_study(study_name=name, storage=storage)
    pointer = best_model_pointer(study)
    if pointer is None:
        raise StudyError(f"study {name!r} has no best model yet; run it first (hpsearch run --study {name})")
    check_new_directory(out_dir)
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
        (staging / "README.md").write_text(model_card(name, spec, record))
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if out_dir.exists():
            out_dir.rmdir()
        shutil.move(str(staging), out_dir)
    return record


def check_new_directory(out_dir: Path) -> None:
    """An export goes into a new or empty directory, never over another one."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise HpsearchError(f"{out_dir} exists and is not an empty directory; name a new one")


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


def model_card(name: str, spec, best: dict) -> str:
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

## Evaluation metrics of this trial (last evaluation)
| metric | value |
| --- | --- |
{metrics}
"""
