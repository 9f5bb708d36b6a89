"""The precision trials train in: bf16 mixed precision where it runs fast, unless the spec says.

A spec that sets `bf16` or `fp16` itself (in `training:` or its search space) gets exactly that.
Otherwise trials use bf16 on a GPU that supports it (Ampere and later), fp16 on an older GPU, and
bf16 on a CPU with bf16 instructions: AMX tiles (Intel Sapphire Rapids and later) or AVX512-BF16
(AMD Zen 4, Intel Cooper Lake), where MiniLM trained and evaluated faster than in fp32 at the same
accuracy (BENCHMARKS.md, "Head-to-head" and "bf16 on a CPU without AMX").
Everywhere else fp32: a CPU without them emulates bf16, slower than fp32. So does a CPU that has
them when torch is told not to use them: ATEN_CPU_CAPABILITY=avx2 (torch's own kernels) or
ONEDNN_MAX_CPU_ISA below AVX512_CORE_BF16 (oneDNN's matmuls, which then emulate bf16, far slower
than fp32); that is also how an AVX2-only CPU is reproduced on a newer one (BENCHMARKS.md, "AVX2",
for how much).
`training: {bf16: false}` turns it off.
"""

from __future__ import annotations

import functools
import os
from typing import Any

PRECISION_KEYS = ("bf16", "fp16")
# oneDNN's CPU ISA caps (its ONEDNN_MAX_CPU_ISA values) that leave out bf16 dot products.
ONEDNN_ISAS_WITHOUT_BF16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)


def auto_precision(values: dict[str, Any]) -> dict[str, Any]:
    """TrainingArguments to add to `values` for the fastest safe precision here ({} for fp32)."""
    if any(key in values for key in PRECISION_KEYS):
        return {}
    return _hardware_precision()


@functools.cache
def _hardware_precision() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}
    if cpu_has_bf16():
        # TrainingArguments accepts bf16 without a GPU only when told that the CPU is meant.
        return {"bf16": True, "use_cpu": True}
    return {}


def cpu_has_bf16() -> bool:
    """True if torch computes in bf16 natively here: the CPU has AMX tiles or AVX512-BF16
    instructions, and neither torch's kernels nor oneDNN's are held below AVX-512 (the probes
    report the CPU, not what torch was allowed to use)."""
    import torch

    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ONEDNN_ISAS_WITHOUT_BF16:
        return False
    return _probe("_is_amx_tile_supported") or _probe("_is_avx512_bf16_supported")


def _probe(name: str) -> bool:
    import torch

    probe = getattr(torch.cpu, name, None)  # private, so probed with care
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # noqa: BLE001 - any failure of a probe means "not known to be there"
        return False


def precision_name(values: dict[str, Any]) -> str:
    return "bf16" if values.get("bf16") else "fp16" if values.get("fp16") else "fp32"
