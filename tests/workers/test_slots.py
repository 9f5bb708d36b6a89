"""Assigning workers to GPUs and cores: a pure function, tested without a GPU."""

from __future__ import annotations

import pytest

from hpsearch.errors import HpsearchError
from hpsearch.workers import plan_slots


def test_one_worker_per_gpu_pinned():
    slots = plan_slots("all", None, n_visible_gpus=4, n_cores=16)
    # Each worker sees exactly one GPU and gets a quarter of the cores.
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "2", "3"]
    assert {s.env["HPSEARCH_THREADS"] for s in slots} == {"4"}
    assert [s.label for s in plan_slots("0,2,3", None, 4, 16)] == ["gpu0", "gpu2", "gpu3"]


def test_gpu_indexes_follow_the_parents_visible_devices():
    # The parent itself sees physical GPUs 4, 5, 6: its GPU 1 is physical 5.
    slots = plan_slots("1,2", None, n_visible_gpus=3, n_cores=8, visible_devices="4,5,6")
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["5", "6"]


def test_cpu_workers_split_the_cores_and_hide_gpus():
    slots = plan_slots(None, 3, n_visible_gpus=2, n_cores=8)
    assert len(slots) == 3
    assert all(s.env["CUDA_VISIBLE_DEVICES"] == "" for s in slots)
    assert {s.env["HPSEARCH_THREADS"] for s in slots} == {"2"}
    # More workers than cores: each still gets one thread.
    assert {s.env["HPSEARCH_THREADS"] for s in plan_slots(None, 4, 0, 2)} == {"1"}


@pytest.mark.parametrize(
    "gpus, workers, visible, message",
    [
        ("all", 2, 4, "give --gpus or --workers, not both"),
        ("all", None, 0, "--gpus all: no GPU is visible here; use --workers N to run on CPU"),
        ("0,x", None, 4, "--gpus: expected all or GPU indexes like 0,2,3, got '0,x'"),
        ("1,1", None, 4, "--gpus: 1,1 names a GPU twice"),
        ("0,4", None, 4, "--gpus: no GPU 4; this machine shows 4 (0 to 3)"),
    ],
)
def test_mistakes_are_one_line_errors(gpus, workers, visible, message):
    with pytest.raises(HpsearchError) as caught:
        plan_slots(gpus, workers, visible, n_cores=8)
    assert caught.value.message == message


def test_gpus_per_trial_groups_the_gpus_in_order():
    # 8 GPUs, 2 per trial: 4 workers, each pinned to its pair; each process 1/16 of the cores.
    slots = plan_slots("all", None, n_visible_gpus=8, n_cores=32, gpus_per_trial=2)
    assert [s.label for s in slots] == ["gpu0-1", "gpu2-3", "gpu4-5", "gpu6-7"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0,1", "2,3", "4,5", "6,7"]
    assert {s.env["HPSEARCH_THREADS"] for s in slots} == {"4"}
    # Named GPUs are grouped in the order given, through the parent's own visible devices.
    named = plan_slots(
        "3,1,0,2", None, n_visible_gpus=4, n_cores=8, visible_devices="4,5,6,7", gpus_per_trial=2
    )
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in named] == ["7,5", "4,6"]


def test_cpu_trial_groups_split_the_cores_between_every_process():
    slots = plan_slots(None, 2, n_visible_gpus=0, n_cores=8, gpus_per_trial=2)
    assert len(slots) == 2 and {s.env["HPSEARCH_THREADS"] for s in slots} == {"2"}


def test_gpus_that_do_not_split_into_groups_are_refused():
    with pytest.raises(HpsearchError) as caught:
        plan_slots("all", None, n_visible_gpus=3, n_cores=8, gpus_per_trial=2)
    assert caught.value.message == (
        "--gpus all gives 3 GPUs, which --gpus-per-trial 2 cannot split evenly; "
        "name a multiple of 2, e.g. --gpus 0,1"
    )
