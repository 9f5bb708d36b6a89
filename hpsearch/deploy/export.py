"""`hpsearch export --quantize int8 --onnx`: the plain export (model_dir.py) plus its deployable
forms, each measured against the fp32 model, all written at once or not at all.

OUT_DIR/            the fp32 model, tokenizer and card, as a plain export writes them
OUT_DIR/int8/       model_int8.pt (state dict), config, tokenizer: `hpsearch.deploy.load_int8`
OUT_DIR/onnx/       model.onnx, config, tokenizer: ONNX Runtime
OUT_DIR/deployment.json   the measurements the card's "Deployment" section and the CLI show
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict
from pathlib import Path

from hpsearch.deploy.card import deployment_section, describe_conditions
from hpsearch.deploy.evalset import EvalSet, load_eval_set
from hpsearch.deploy.measure import (
    Measurement,
    measure_latencies,
    measure_size,
    predict_eval_set,
    score,
)
from hpsearch.deploy.model_dir import export_best_model, staged_directory
from hpsearch.deploy.onnx import ONNX_DIR, load_onnx, run_onnx, save_onnx
from hpsearch.deploy.quantize import INT8_DIR, load_int8, save_int8
from hpsearch.errors import HpsearchError
from hpsearch.spec import MERGEABLE_METHODS, StudySpec
from hpsearch.study import stored_spec
from hpsearch.tasks import TASKS

# Tasks whose model maps tokens to the outputs the task's own metrics score (Task.deployable).
DEPLOYABLE_TASKS = tuple(name for name, task in TASKS.items() if task.deployable)
QUANTIZATIONS = ("int8",)
RESULT_FILE = "deployment.json"
ONNX_PACKAGES = (
    "onnx",
    "onnxscript",
    "onnxruntime",
)  # the model format, torch's exporter, the runtime


def check_deployable(spec: StudySpec, name: str, *, onnx: bool) -> None:
    """The study's task has deployable forms, and what --onnx needs is installed."""
    if spec.task not in DEPLOYABLE_TASKS:
        raise HpsearchError(
            f"--quantize and --onnx export {' and '.join(DEPLOYABLE_TASKS)} models; study {name!r} "
            f"is {spec.task}: export it without them"
        )
    unmerged = [m for m in (spec.peft.methods if spec.peft else []) if m not in MERGEABLE_METHODS]
    if unmerged:
        raise HpsearchError(
            f"--quantize and --onnx convert merged weights, and study {name!r} searches "
            f"{' and '.join(unmerged)}, whose virtual tokens cannot be merged; export it without "
            "them"
        )
    missing = [m for m in ONNX_PACKAGES if onnx and importlib.util.find_spec(m) is None]
    if missing:
        raise HpsearchError(f"--onnx needs {', '.join(missing)}: pip install 'hpsearch[deploy]'")


def export_deployable(
    storage,
    name: str,
    artifact_store,
    out_dir: Path,
    *,
    quantize: str | None,
    onnx: bool,
    cache_dir: Path,
    finish=None,
    trial: int | None = None,
    max_latency_ms: float | None = None,
) -> tuple[dict, dict]:
    """Export the study's best model to `out_dir` with its int8 (`quantize="int8"`) and/or ONNX
    forms, measure each against the fp32 model and add them to the card; returns the trial's record
    and what deployment.json holds. Built beside `out_dir` and moved there once complete: a failure
    leaves `out_dir` as it was."""
    spec = stored_spec(storage, name)
    check_deployable(spec, name, onnx=onnx)
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise HpsearchError(f"quantize: {quantize!r} is not one of {', '.join(QUANTIZATIONS)}")
    with staged_directory(out_dir) as staging:
        record = export_best_model(
            storage,
            name,
            artifact_store,
            staging,
            finish,
            trial=trial,
            max_latency_ms=max_latency_ms,
        )  # (a LoRA adapter merged)
        # Measured on the eval set as the trial saw it (its model's tokens, its max_length).
        trial_spec = spec.for_trial(record["params"])
        result = build_forms(trial_spec, staging, quantize=quantize, onnx=onnx, cache_dir=cache_dir)
    return record, result


def build_forms(
    spec: StudySpec, model_dir: Path, *, quantize: str | None, onnx: bool, cache_dir: Path
) -> dict:
    """Write the requested forms of the exported fp32 model in `model_dir`, measure all of them,
    and record the measurements in its card and in deployment.json."""
    import torch

    from hpsearch.trial import transformers_class

    task = spec.task_spec
    eval_set = load_eval_set(spec, model_dir, cache_dir)
    model = transformers_class(task.model_class).from_pretrained(model_dir).eval()
    check_labels(model.config, eval_set.label_names)
    n_threads = torch.get_num_threads()
    weights = sorted(model_dir.glob("*.safetensors"))
    forms = [("pytorch fp32", weights, torch_predict(model, eval_set.tokenizer, task))]
    if quantize == "int8":
        saved = save_int8(model, eval_set.tokenizer, model_dir / INT8_DIR)
        # What is measured is the model as a user loads it back, not the one in memory.
        forms.append(
            (
                "int8",
                [saved],
                torch_predict(load_int8(model_dir / INT8_DIR), eval_set.tokenizer, task),
            )
        )
    if onnx:
        saved = save_onnx(model, eval_set.tokenizer, model_dir / ONNX_DIR, task)
        session = load_onnx(model_dir / ONNX_DIR, n_threads=n_threads)
        forms.append(("onnx", [saved], lambda batch: run_onnx(session, batch, task.output_names)))
    compute_metrics = task.compute_metrics(
        spec.dataset, eval_set.tokenizer, eval_set.label_names, features=eval_set.features
    )
    latencies = measure_latencies([predict for _, _, predict in forms], eval_set.singles)
    measurements = [
        measure(
            form,
            files,
            predict,
            latency,
            model_dir,
            eval_set,
            compute_metrics,
            spec.objective.metric,
            task.label_columns,
        )
        for (form, files, predict), latency in zip(forms, latencies, strict=True)
    ]
    conditions = describe_conditions(n_threads, len(eval_set.singles), eval_set.n_examples)
    card = model_dir / "README.md"
    card.write_text(card.read_text() + deployment_section(measurements, conditions, task))
    result = {
        "conditions": conditions,
        "threads": n_threads,
        "eval_examples": eval_set.n_examples,
        "latency_examples": len(eval_set.singles),
        "forms": [asdict(m) for m in measurements],
    }
    (model_dir / RESULT_FILE).write_text(json.dumps(result, indent=2))
    return result


def check_labels(config, label_names: list[str] | None) -> None:
    """The eval set's labels are the model's, in its order (else its metric would mean nothing)."""
    model_names = [config.id2label[i] for i in range(config.num_labels)]
    if label_names is not None and model_names != list(label_names):
        raise HpsearchError(
            f"the eval set's labels {label_names} are not the model's {model_names}; "
            "was the study's data changed since it ran?"
        )


def torch_predict(model, tokenizer, task):
    """A PyTorch model as a measured form: a tokenized batch (numpy) to its outputs (numpy), one
    per name of the task's `output_names`."""
    import torch

    names = set(tokenizer.model_input_names)

    def predict(batch: dict):
        inputs = {k: torch.from_numpy(v) for k, v in batch.items() if k in names}
        with torch.inference_mode():
            outputs = model(**inputs)
        return tuple(outputs[name].float().numpy() for name in task.output_names)

    return predict


def measure(
    form: str,
    files: list[Path],
    predict,
    latency_ms: float,
    model_dir: Path,
    eval_set: EvalSet,
    compute_metrics,
    metric: str,
    label_columns: tuple[str, ...],
) -> Measurement:
    outputs, labels = predict_eval_set(predict, eval_set.batches, label_columns)
    metrics = score(outputs, labels, compute_metrics)
    return Measurement(
        form=form,
        path=", ".join(str(f.relative_to(model_dir)) for f in files),
        size_mb=sum(measure_size(f) for f in files),
        latency_ms=latency_ms,
        metric=metric,
        value=metrics[metric],
        metrics=metrics,
    )
