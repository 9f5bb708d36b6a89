"""Smoke-sized runs of the benchmark scripts: they run end to end and measure what they say.
(The longest, the head-to-head and preemption smokes, have files of their own so that the two
test processes of `make test`, which take a file at a time, share them.)

The figures in BENCHMARKS.md come from full-sized runs of the same scripts; these only keep the
scripts working (and the head-to-head fair) as the code changes.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.conftest import REPO, run_bench

POSTGRES_URL = os.environ.get("HPSEARCH_TEST_POSTGRES")


def test_overhead_measures_both_loops():
    stdout = run_bench(
        "overhead.py",
        "--n-trials",
        "5",
        "--repeats",
        "1",
        "--parts",
        "--postgres",
        POSTGRES_URL or "",
    )
    rows = [line for line in stdout.splitlines() if line.startswith(("| SQLite", "| PostgreSQL"))]
    assert len(rows) == (2 if POSTGRES_URL else 1)
    # Each step hpsearch adds is timed alone too, on every storage measured.
    step_rows = [
        line
        for line in stdout.splitlines()
        if line.startswith(("| study lock", "| heartbeat thread"))
    ]
    assert len(step_rows) == 2 and all(line.count("|") == len(rows) + 2 for line in step_rows)


def test_scaling_meets_the_budget_exactly_and_measures_the_database(tmp_path):
    if POSTGRES_URL is None:
        pytest.skip("set HPSEARCH_TEST_POSTGRES: scaling runs on PostgreSQL")
    # The script asserts that every run spent its budget exactly, no trial more or less.
    out = tmp_path / "scaling.json"
    stdout = run_bench(
        "scaling.py",
        "--postgres",
        POSTGRES_URL,
        "--workers",
        "1,2",
        "--trials-per-worker",
        "2",
        "--seconds",
        "0.05",
        "--repeats",
        "1",
        "--running",
        "3",
        "--json",
        str(out),
    )
    assert "| 2 | 4 |" in stdout
    figures = json.loads(out.read_text())
    for run in figures["runs"]:
        # Each worker holds its own sessions; every trial reads and writes; the lock was taken
        # once per trial at least; a server on this machine has its CPU measured (one whose
        # processes /proc cannot see, in a container, is reported as remote).
        assert run["peak_sessions"] >= run["workers"]
        assert run["statements_per_trial"] > 10 and run["transactions_per_trial"] > 1
        assert run["statement_kinds_per_trial"]["INSERT trials"] == 1.0
        assert run["lock_hold_ms_median"] > 0 and 0 < run["lock_busy"] < 1
        assert run.get("db_cores", 1) > 0
    assert [(row["running"], row["cache"]) for row in figures["hold_with_running"]] == [
        (3, "Optuna's _CachedStorage"),
        (3, "StudyCache"),
    ]


@pytest.mark.slow
def test_gpu_bench_runs_what_a_cpu_can_and_says_what_it_skipped(tmp_path, cache_dir):
    out = tmp_path / "gpu.md"
    stdout = run_bench(
        "gpu.py", "--smoke", "--out", str(out), env={"HPSEARCH_CACHE": str(cache_dir)}, timeout=300
    )
    text = out.read_text()
    # The section, the command that produced it (less --out) and the table, also printed.
    assert text.startswith("## GPU (bench/gpu.py)") and "python bench/gpu.py --smoke\n" in text
    assert "| part | figure | value | check |" in stdout
    rows: dict[str, list[list[str]]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0][:2] in ("a.", "b.", "c.", "d.", "e."):
            rows.setdefault(cells[0][0], []).append(cells)
    assert sorted(rows) == ["a", "b", "c", "d", "e"]
    # a: the default study ran on the CPU workers, every check passed.
    device = next(cells for cells in rows["a"] if cells[1] == "device")
    assert device[2].startswith("cpu (") and device[3] == "pass"
    assert all(cells[3] in ("pass", "") for cells in rows["a"]) and rows["a"][0][3] == "pass"
    # b and c: skipped, saying why.
    assert rows["b"][0][3].startswith("skipped:") and "no GPU" in rows["b"][0][3]
    assert rows["c"][0][3].startswith("skipped:") and "RAM" in rows["c"][0][3]
    # d: two positive step times, fp32 and bf16.
    steps = {
        cells[1]: float(cells[2].split(" ms/step")[0])
        for cells in rows["d"]
        if "step time" in cells[1]
    }
    assert sorted(steps) == ["bf16 step time", "fp32 step time"] and all(
        ms > 0 for ms in steps.values()
    )
    # e: two gloo ranks per trial on the CPU, agreeing.
    assert (
        rows["e"][0][3] == "pass"
        and rows["e"][1][3] == "pass"
        and rows["e"][1][2].startswith("2 per trial on 2 x cpu")
    )


@pytest.mark.slow
def test_techniques_measures_full_fine_tuning_and_lora(tmp_path):
    out = tmp_path / "techniques.json"
    # Two of the five variants, to keep CI short; each variant is a spec change (variant_spec) that
    # the techniques' own tests cover.
    run_bench(
        "techniques.py",
        "--n-trials",
        "1",
        "--max-train-samples",
        "48",
        "--max-eval-samples",
        "24",
        "--only",
        "full,lora",
        "--json",
        str(out),
    )
    rows = {r["variant"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"full", "lora"}
    for row in rows.values():
        # Each variant ran its one trial, trained and kept a model; memory was measured.
        assert sum(row["states"].values()) == 1 and row["n_steps"] > 0 and row["peak_rss_mb"] > 100
        assert 0.0 <= row["best"] <= 1.0
    # LoRA keeps megabytes (the adapter, the head, the tokenizer), a full fine-tune the whole model.
    assert rows["lora"]["model_artifact_mb"] < 3 and rows["full"]["model_artifact_mb"] > 50
    assert rows["lora"]["best_trial_trainable_parameters"] > 0


def test_every_techniques_variant_is_a_valid_default_study():
    import yaml

    sys.path.insert(0, str(REPO / "bench"))
    from techniques import VARIANTS, variant_spec

    from hpsearch.spec import check_sources, parse_spec

    base = yaml.safe_load((REPO / "studies" / "sentiment.yaml").read_text())
    for variant in VARIANTS:
        # Each variant is the default study plus its technique, accepted by every check.
        check_sources(parse_spec(variant_spec(base, variant), variant))


def test_every_adapters_variant_is_a_valid_default_study():
    import yaml

    sys.path.insert(0, str(REPO / "bench"))
    from adapters import VARIANTS, variant_spec

    from hpsearch.spec import check_sources, parse_spec

    base = yaml.safe_load((REPO / "studies" / "sentiment.yaml").read_text())
    methods = set()
    for variant in VARIANTS:
        # Each variant is the default study with its PEFT method, accepted by every check.
        spec = parse_spec(variant_spec(base, variant), variant)
        check_sources(spec)
        methods.add(spec.peft.resolve({})["method"] if spec.peft else "full")
    assert methods == {"full", "lora", "ia3", "prompt_tuning"}


@pytest.mark.slow
def test_saves_bench_times_the_old_save_and_the_new_one():
    stdout = run_bench("saves.py", "--models", "minilm", "--repeats", "1")
    row = next(line for line in stdout.splitlines() if line.startswith("| minilm |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # The default study's model, each variant timed (the overlapped one may round to 0.00).
    assert cells[1] == "22.7M" and float(cells[2]) > 80  # MiB: 91 MB of fp32 weights
    assert float(cells[3]) > 0 and float(cells[4]) > 0 and float(cells[5]) >= 0


def test_every_augment_variant_is_a_valid_default_study():
    import yaml

    sys.path.insert(0, str(REPO / "bench"))
    from augment import VARIANTS, variant_spec

    from hpsearch.spec import check_sources, parse_spec

    base = yaml.safe_load((REPO / "studies" / "sentiment.yaml").read_text())
    specs = {v: parse_spec(variant_spec(base, v, seed=1), v) for v in VARIANTS}
    for spec in specs.values():
        check_sources(spec)
        assert spec.seed == 1 and spec.sampler.seed == 1
    assert specs["augmented"].augment is not None and specs["plain"].augment is None
    # 'longer': the plain study with as many steps as 4 copies and 2 epochs could make, no new rows.
    assert specs["longer"].augment is None
    assert variant_spec(base, "longer", 1)["search_space"]["num_train_epochs"] == {"int": [1, 10]}
