"""The precision trials train in: the spec's if set, else bf16 where the hardware runs it fast."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from hpsearch.trial import build_training_args, describe_device, precision
from hpsearch.trial.precision import auto_precision, cpu_has_bf16


def test_a_spec_that_names_a_precision_gets_exactly_that(tmp_path):
    # Either key, true or false, switches the automatic choice off.
    assert auto_precision({"bf16": False}) == {}
    assert auto_precision({"fp16": True, "learning_rate": 1e-4}) == {}
    args = build_training_args({"bf16": False}, seed=0, output_dir=tmp_path)
    assert not args.bf16 and not args.fp16


def test_automatic_precision_follows_the_hardware(tmp_path):
    chosen = auto_precision({"learning_rate": 1e-4})
    if torch.cuda.is_available():
        expected = {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    elif cpu_has_bf16():
        expected = {
            "bf16": True,
            "use_cpu": True,
        }  # AMX tiles or AVX512-BF16: bf16 is faster than fp32
    else:
        expected = {}  # bf16 would be emulated, slower than fp32
    assert chosen == expected
    # TrainingArguments accept the choice on this machine, and the worker says what it trains in.
    args = build_training_args({}, seed=0, output_dir=tmp_path)
    assert args.bf16 == expected.get("bf16", False)
    assert describe_device({}).endswith(
        f"{'bf16' if args.bf16 else 'fp16' if args.fp16 else 'fp32'})"
    )
    # A spec that turns bf16 off trains in fp32, on a GPU as on a CPU.
    assert describe_device({"bf16": False}).endswith(", fp32)")


# precision.py run on its own (runpy): importing the hpsearch.trial package would load transformers,
# seconds per child for nothing this test reads.
_PROBE = (
    "import runpy, sys; module = runpy.run_path(sys.argv[1]); "
    "print(module['cpu_has_bf16'](), module['_hardware_precision']())"
)


def _probe_with(env: dict[str, str]) -> str:
    """What cpu_has_bf16 and the automatic choice say in a fresh process with `env` set (torch
    reads ATEN_CPU_CAPABILITY once, when it loads)."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, precision.__file__],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_torch_held_below_avx512_trains_in_fp32():
    # An AVX512-BF16 CPU whose torch kernels are held to AVX2, or whose oneDNN is, computes bf16
    # by emulation (oneDNN's bf16 matmuls ~40x slower than fp32): the choice is fp32, as on an
    # AVX2-only CPU.
    assert _probe_with({"ATEN_CPU_CAPABILITY": "avx2"}) == "False {}"
    assert _probe_with({"ONEDNN_MAX_CPU_ISA": "avx512_core_vnni"}) == "False {}"
    # Unheld, the child agrees with this process (bf16 on a CPU with the instructions).
    expected = "True {'bf16': True, 'use_cpu': True}" if cpu_has_bf16() else "False {}"
    assert _probe_with({}) == expected
