"""A smoke-sized run of bench/preemption.py: the work a kill -9 loses, with and without
checkpoints (BENCHMARKS.md has the full-sized figures)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_bench


@pytest.mark.slow
def test_preemption_measures_the_work_a_kill_loses_with_and_without_checkpoints(
    tmp_path, cache_dir
):
    out = tmp_path / "preemption.json"
    run_bench(
        "preemption.py",
        "--max-train-samples",
        "128",
        "--max-eval-samples",
        "32",
        "--json",
        str(out),
        env={"HPSEARCH_CACHE": str(cache_dir)},
        timeout=1200,  # four runs and two kills; 600 s was too short on a CPU shared with a bench
    )
    results = json.loads(out.read_text())
    # Uninterrupted, only the checkpointed run saved (at each evaluation but the last: 3 of 4).
    assert results["uninterrupted with"]["n_checkpoints"] == 3
    assert results["uninterrupted with"]["checkpoint_mb"] > 50
    assert "n_checkpoints" not in results["uninterrupted without"]
    # Killed at the 2nd evaluation: without checkpoints the re-run trained everything again; with
    # them it resumed from a checkpoint and re-trained at most one evaluation interval.
    without, with_ = results["killed without"], results["killed with"]
    assert without["resumed_from_step"] == 0
    assert without["steps_retrained"] == without["killed_after_step"]
    assert 0 < with_["resumed_from_step"] <= with_["killed_after_step"]
    assert with_["steps_retrained"] <= with_["killed_after_step"] // 2
