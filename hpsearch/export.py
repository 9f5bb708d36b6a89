"""The best model as a directory `transformers.pipeline` loads, with a model card."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

import optuna
from optuna.artifacts import download_artifact

from hpsearch.artifact import best_model_pointer
from hpsearch.errors import HpsearchError, StudyError
from hpsearch.status import best_trial
from hpsearch.study import stored_spec


def export_best_model(storage, name: str, artifact_store, out_dir: Path) -> dict:
    """Unpack the study's best model into `out_dir` (which must be new or empty) and add a card."""
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
        best = best_trial(storage, name)
        (staging / "README.md").write_text(model_card(name, stored_spec(storage, name), best))
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if out_dir.exists():
            out_dir.rmdir()
        shutil.move(str(staging), out_dir)
    return best


def model_card(name: str, spec, best: dict) -> str:
    params = "\n".join(f"| {k} | {v} |" for k, v in best["params"].items())
    fixed = "\n".join(f"| {k} | {v} |" for k, v in spec.training.items()) or "| (none) | |"
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(best["metrics"].items()) if isinstance(v, float))
    return f"""---
library_name: transformers
pipeline_tag: text-classification
---
# {name}: best model of an hpsearch study

Fine-tuned from `{spec.model}` on `{spec.dataset.source}` (text column `{spec.dataset.text}`,
label column `{spec.dataset.label}`), the best of {spec.budget.n_trials} trials searched by hpsearch
for {spec.objective.direction} `{best['metric']}`: **{best['value']:.4f}** (trial {best['number']},
seed {best['seed']}).

```python
from transformers import pipeline
classify = pipeline("text-classification", model="path/to/this/directory")
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
