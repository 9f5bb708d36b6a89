"""The ONNX form: the fine-tuned model exported by torch's own exporter (`torch.onnx.export` with
dynamo=True, onnxscript) with dynamic batch and sequence axes, beside its config and tokenizer,
run by ONNX Runtime on the CPU. (Optimum's exporter would do the same, but optimum-onnx 0.1 needs
transformers < 4.58; hpsearch runs on transformers 5.)
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from hpsearch.tasks import Task

ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"


def save_onnx(model, tokenizer, target: Path, task: Task) -> Path:
    """Export `model` (fp32, in eval mode) to `target`/model.onnx (a new directory) with its config
    and tokenizer; returns the model file. Its inputs are the tokenizer's (input_ids,
    attention_mask, token_type_ids, ...), int64 of shape (batch, sequence); its outputs the task's
    `output_names` (`logits`), traced on the task's example batch."""
    import torch
    from torch.export import Dim

    example = task.example_batch(tokenizer)
    batch, sequence = Dim("batch"), Dim("sequence")
    target.mkdir(parents=True)
    path = target / ONNX_FILE
    torch_onnx_log = logging.getLogger("torch.onnx")
    level = torch_onnx_log.level
    # The exporter logs each torchvision op it skips (not installed, not needed) and warns that axes
    # sharing one name are merged (that is what the shared Dims ask for).
    torch_onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*axis name: .* will not be used")
            warnings.filterwarnings(
                "ignore", category=FutureWarning
            )  # torch's own pytree deprecations
            torch.onnx.export(
                model,
                (),
                str(path),
                kwargs=example,
                input_names=list(example),
                output_names=list(task.output_names),
                dynamic_shapes={name: {0: batch, 1: sequence} for name in example},
                dynamo=True,
                external_data=False,
                verbose=False,
                report=False,
            )
    finally:
        torch_onnx_log.setLevel(level)
    model.config.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return path


def load_onnx(directory: Path | str, n_threads: int | None = None):
    """An ONNX Runtime session (CPU) of the model saved by `hpsearch export --onnx`; `n_threads`
    intra-op threads (default: ONNX Runtime's choice, one per core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if n_threads is not None:
        options.intra_op_num_threads = n_threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(Path(directory) / ONNX_FILE), options, providers=["CPUExecutionProvider"]
    )


def run_onnx(session, batch: dict, outputs: tuple[str, ...] = ("logits",)):
    """The logits of a tokenized batch (numpy int arrays by input name); extra keys are ignored.
    With several `outputs` (a task's output_names), a tuple of them."""
    feeds = {i.name: np.asarray(batch[i.name], dtype=np.int64) for i in session.get_inputs()}
    results = session.run(list(outputs), feeds)
    return results[0] if outputs == ("logits",) else tuple(results)
