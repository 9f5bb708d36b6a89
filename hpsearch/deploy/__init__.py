"""The best model written as a directory pipeline() loads, and its deployable forms: int8 (dynamic
quantization of its linear layers) and ONNX (run by ONNX Runtime), each measured against the fp32
model for file size, CPU latency per example and the study's objective on its eval set. Importing
it is cheap: torch, transformers and onnxruntime are imported by the functions that use them (and
merge.py, which folds a LoRA adapter into the weights, by whoever merges one)."""

from hpsearch.deploy.card import deployment_table, usage_int8, usage_onnx
from hpsearch.deploy.export import (
    DEPLOYABLE_TASKS,
    QUANTIZATIONS,
    RESULT_FILE,
    check_deployable,
    export_deployable,
)
from hpsearch.deploy.measure import Measurement
from hpsearch.deploy.model_dir import check_new_directory, export_best_model, staged_directory
from hpsearch.deploy.onnx import ONNX_DIR, ONNX_FILE, load_onnx, run_onnx, save_onnx
from hpsearch.deploy.quantize import INT8_DIR, WEIGHTS_FILE, load_int8, quantize_int8, save_int8
from hpsearch.deploy.test_score import score_kept_models, score_on_test_set

__all__ = [
    "DEPLOYABLE_TASKS",
    "INT8_DIR",
    "ONNX_DIR",
    "ONNX_FILE",
    "QUANTIZATIONS",
    "RESULT_FILE",
    "WEIGHTS_FILE",
    "Measurement",
    "check_deployable",
    "check_new_directory",
    "deployment_table",
    "export_best_model",
    "export_deployable",
    "load_int8",
    "load_onnx",
    "quantize_int8",
    "run_onnx",
    "save_int8",
    "save_onnx",
    "score_kept_models",
    "score_on_test_set",
    "staged_directory",
    "usage_int8",
    "usage_onnx",
]
