"""How a deployment is described: the table the CLI prints and the model card's "Deployment"
section, both from the same measurements, and the code that loads each form."""

from __future__ import annotations

from rich.table import Table

from hpsearch.deploy.measure import Measurement
from hpsearch.deploy.onnx import ONNX_DIR, ONNX_FILE
from hpsearch.deploy.quantize import INT8_DIR, WEIGHTS_FILE
from hpsearch.tasks import Task


def describe_conditions(n_threads: int, n_latency: int, n_eval: int) -> str:
    return (
        f"latency: one forward pass at batch 1 (tokenizing excluded), median of {n_latency} eval "
        f"examples, {n_threads} CPU threads; metric: the study's eval set ({n_eval} examples)"
    )


def columns(metric: str) -> tuple[str, ...]:
    return ("form", "size (MB)", "latency (ms)", metric, "vs fp32")


def format_row(m: Measurement, baseline: Measurement) -> tuple[str, ...]:
    change = "" if m is baseline else f"{m.value - baseline.value:+.4f}"
    return (m.form, f"{m.size_mb:.1f}", f"{m.latency_ms:.2f}", f"{m.value:.4f}", change)


def deployment_table(measurements: list[Measurement], conditions: str) -> Table:
    table = Table(
        title="deployable forms", caption=conditions, title_justify="left", caption_justify="left"
    )
    for column in columns(measurements[0].metric):
        table.add_column(column, no_wrap=True)
    for m in measurements:
        table.add_row(*format_row(m, measurements[0]))
    return table


def deployment_section(measurements: list[Measurement], conditions: str, task: Task) -> str:
    """Markdown for the model card: the table, then how to load each form beyond fp32."""
    names = ("form", "file", *columns(measurements[0].metric)[1:])
    rows = "\n".join(
        "| " + " | ".join((m.form, f"`{m.path}`", *format_row(m, measurements[0])[1:])) + " |"
        for m in measurements
    )
    forms = {m.form for m in measurements}
    usage = ""
    if "int8" in forms:
        usage += (
            f"\n### int8 (`{INT8_DIR}/`)\n\n"
            "The linear layers dynamically quantized (int8 weights, activations quantized per "
            "batch); the embeddings stay fp32.\n\n"
            f"```python\n{usage_int8(task, f'path/to/this/directory/{INT8_DIR}')}\n```\n"
        )
    if "onnx" in forms:
        usage += (
            f"\n### ONNX (`{ONNX_DIR}/`)\n\n"
            f"```python\n{usage_onnx(task, f'path/to/this/directory/{ONNX_DIR}')}\n```\n"
        )
    return f"""
## Deployment

| {" | ".join(names)} |
|{" --- |" * len(names)}
{rows}

Measured by `hpsearch export`: {conditions}.
{usage}"""


def usage_int8(task: Task, model_dir: str) -> str:
    """Loading the int8 form, with hpsearch installed and without it."""
    # The card's code, a line per item (the long ones written in two pieces).
    served = [
        "from hpsearch.deploy import load_int8",
        "from transformers import AutoTokenizer, pipeline",
        (
            f'model = pipeline("{task.pipeline_task}", model=load_int8("{model_dir}"), '
            f'tokenizer=AutoTokenizer.from_pretrained("{model_dir}"))'
        ),
        "",
    ]
    lines = [
        # No pipeline() serves some tasks in transformers 5 (question answering): the model alone.
        *(served if task.pipeline_task else []),
        (
            "# or with torch and transformers alone: build from the config, quantize the same way, "
            "load the weights"
        ),
        "import torch",
        f"from transformers import AutoConfig, {task.model_class}",
        f'model = {task.model_class}.from_config(AutoConfig.from_pretrained("{model_dir}")).eval()',
        "quantization = torch.ao.quantization",
        (
            "model = quantization.quantize_dynamic(model, "
            "{torch.nn.Linear: quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8)"
        ),
        f'model.load_state_dict(torch.load("{model_dir}/{WEIGHTS_FILE}", weights_only=True))',
    ]
    return "\n".join(lines)


def usage_onnx(task: Task, model_dir: str) -> str:
    """Running the ONNX form with ONNX Runtime alone (no torch)."""
    lines = [
        "import onnxruntime",
        "from transformers import AutoConfig, AutoTokenizer",
        (
            f'session = onnxruntime.InferenceSession("{model_dir}/{ONNX_FILE}", '
            'providers=["CPUExecutionProvider"])'
        ),
        (
            f'tokenizer, config = AutoTokenizer.from_pretrained("{model_dir}"), '
            f'AutoConfig.from_pretrained("{model_dir}")'
        ),
        *task.onnx_usage(),
    ]
    return "\n".join(lines)
