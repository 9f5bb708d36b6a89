"""A smoke-sized run of bench/large_model.py on a small model from tools/make_large_model.py.

It keeps the bench and the tool working; the 1B figures in BENCHMARKS.md come from full size.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_script(*args: str) -> str:
    completed = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    return completed.stdout


@pytest.mark.slow
def test_large_model_bench_builds_both_ways_and_measures_memory(tmp_path):
    model = tmp_path / "model"
    small = ("--layers", "2", "--hidden", "64", "--intermediate", "128", "--vocab", "30522")
    stdout = run_script("tools/make_large_model.py", str(model), *small)
    # The tool says how many parameters it wrote: 2 layers of 64 wide and two 30522 x 64 tables.
    assert "3,989,056 parameters" in stdout
    out = tmp_path / "large.json"
    run_script("bench/large_model.py", str(model), "--only", "lora", "--json", str(out))
    report = json.loads(out.read_text())
    runs = {(r["scenario"], r["n_workers"]): r["workers"] for r in report["runs"]}
    # The LoRA scenario ran both builds, with 1 and with 2 workers at once.
    assert set(runs) == {(f"lora-{path}", n) for path in ("new", "old") for n in (1, 2)}
    for workers in runs.values():
        for worker in workers:
            # PSS splits shared pages among the processes that map them: never above RSS.
            assert 0 < worker["together"]["pss"] <= worker["together"]["rss"]
            # Adapters only: a small share of the model; and 3 optimizer steps ran.
            assert 0 < worker["trainable"] < 0.2 * 3_989_056
            assert len(worker["step_s"]) == 3
