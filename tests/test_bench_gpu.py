"""bench/gpu.py's parts for issue 24 (f-i), which only a GPU runs: their plan (--dry-run), the
part selection, and the rows they shape from results, checked on a CPU."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import gpu_scale  # bench/ is on the path from the line above


def run_gpu_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_dry_run_prints_every_part_at_gpu_sizes_and_runs_nothing():
    result = run_gpu_bench("--dry-run", "--trials-each", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # One line per part, a to i, at the GPU's sizes; nothing skipped: the plan is a GPU's.
    assert [line[0] for line in lines] == list("abcdefghi")
    assert lines[0] == "a. --gpus all: 4 trials at 20000 train / 2000 eval examples, max_length 128"
    assert "1.10B parameters" in lines[5]
    assert "--trials-per-gpu K for K = 1, 2, 4, K x 3 trials each" in lines[8]
    assert "skipped" not in result.stdout


def test_dry_run_of_a_cpu_smoke_says_what_it_skips():
    result = run_gpu_bench("--dry-run", "--smoke", "--parts", "afi")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line[0] for line in lines] == ["a", "f", "i"]
    assert lines[0].startswith("a. --workers ") and "skipped" not in lines[0]
    assert all(
        line.endswith("[skipped: --smoke runs on the CPU: this part measures a GPU]")
        for line in lines[1:]
    )


def test_an_unknown_part_is_refused():
    result = run_gpu_bench("--dry-run", "--parts", "az")
    assert result.returncode == 2
    assert "--parts: no part z; the parts are abcdefghi" in result.stderr


def test_a_k_row_checks_processes_sampler_starts_and_peaks():
    attrs = [
        {"pid": 10, "sampler_start": 1, "peak_gpu_memory_mb": 2048},
        {"pid": 11, "sampler_start": 2, "peak_gpu_memory_mb": 3072},
        {"pid": 10, "sampler_start": 1, "peak_gpu_memory_mb": 2048},
        {"pid": 11, "sampler_start": 2, "peak_gpu_memory_mb": 2048},
    ]
    # Idle samples before and after training are left out of the utilisation.
    utils = [0, 0, 80, 90, 70, 0]
    part, figure, value, check = gpu_scale.sharing_row(2, 4, 120.0, utils, attrs)
    assert (part, figure, check) == ("i. trials per GPU", "--trials-per-gpu 2", "pass")
    assert value == (
        "4 trials in 120 s (120 trials/hour); GPU busy 80% while training; largest peak 3.0 GiB"
    )
    # Two processes that drew from one start number, and a trial without a peak: both said.
    attrs[1]["sampler_start"] = attrs[3]["sampler_start"] = 1
    del attrs[3]["peak_gpu_memory_mb"]
    check = gpu_scale.sharing_row(2, 4, 120.0, utils, attrs)[3]
    assert check == ("FAIL: 1 sampler starts for 2 processes; 1 trials recorded no peak GPU memory")
    # K = 2 in one process is no sharing.
    assert gpu_scale.sharing_row(2, 2, 10.0, [], attrs[:1] * 2)[3].startswith(
        "FAIL: 1 worker processes, expected 2"
    )


def test_the_oom_retry_row_reads_the_trials_record():
    rows = gpu_scale.oom_retry_rows("COMPLETE", {"oom_retry_batch": 16, "device": "cuda:0"})
    assert rows == [
        ("h. OOM retry", "the out-of-memory trial's retry", "COMPLETE: oom_retry_batch=16", "pass")
    ]
    assert gpu_scale.oom_retry_rows("FAIL", {})[0][3].startswith("FAIL: no user attribute")


def test_the_large_model_part_builds_a_trials_model_through_hpsearch(tmp_path):
    # The same code at a tiny shape, on this CPU: made, saved, loaded by ModelFactory, built.
    tiny = {**gpu_scale.LLAMA_1B, "hidden_size": 64, "intermediate_size": 128}
    tiny |= {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    rows = gpu_scale.part_f(tmp_path, tiny)
    assert [row[1] for row in rows] == [
        "weights written",
        "worker start (ModelFactory)",
        "one trial's model built on the CPU",
    ]
    assert rows[0][2].startswith(f"{gpu_scale._billions(tiny):.2f}B parameters")
    assert rows[2][3] == "pass"
    assert list((tmp_path / "llama").glob("*.safetensors"))
