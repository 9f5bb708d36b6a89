"""Assigning workers to GPUs and cores: a pure function, tested without a GPU."""

from __future__ import annotations

import pytest

from hpsearch.errors import HpsearchError
from hpsearch.workers import pin_alone, place_workers, plan_slots


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


# Where a run or a worker trains when no --gpus or --workers says so: decided from the number of
# GPUs the machine shows (faked here), so that no process ever sees several GPUs without being a
# DDP rank (Trainer would wrap the model in DataParallel).


def test_a_multi_gpu_host_runs_one_worker_per_gpu_by_default():
    placement = place_workers(None, None, None, n_visible_gpus=4, n_cores=16)
    # Four supervised workers, as --gpus all: each pinned to one GPU, a quarter of the cores each.
    assert placement.mode == "workers"
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in placement.slots] == ["0", "1", "2", "3"]
    assert {s.env["HPSEARCH_THREADS"] for s in placement.slots} == {"4"}
    # Said in one line at start, with how to run one worker instead.
    assert placement.notice == (
        "this machine shows 4 GPUs: one worker per GPU (as --gpus all); --gpus 0 runs one"
    )
    # Through the parent's own visible devices: its GPU 1 is physical 5.
    pinned = place_workers(None, None, None, 2, 8, visible_devices="4,5")
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in pinned.slots] == ["4", "5"]


def test_one_gpu_or_none_trains_in_this_process():
    for n_visible in (0, 1):
        placement = place_workers(None, None, None, n_visible_gpus=n_visible, n_cores=4)
        # In this process, on what it sees, with nothing to say and nothing to pin.
        assert (placement.mode, placement.devices, placement.notice) == ("alone", None, None)


def test_a_supervised_worker_never_supervises_and_trains_on_one_gpu():
    # A worker its supervisor pinned to one GPU trains here.
    assert place_workers(None, None, None, 1, 4, supervised=True).mode == "alone"
    # One that sees several anyway (a launcher's mistake) trains on the first, never on all of them.
    placement = place_workers(None, None, None, 3, 4, visible_devices="2,3,7", supervised=True)
    assert (placement.mode, placement.devices) == ("alone", "2")


def test_trial_groups_by_default_fill_the_host_and_say_which_gpus_stay_idle():
    placement = place_workers(None, None, 2, n_visible_gpus=7, n_cores=14)
    # Three groups of two, as --gpus 0,1,2,3,4,5 --gpus-per-trial 2; GPU 6 left over.
    assert placement.mode == "workers"
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in placement.slots] == ["0,1", "2,3", "4,5"]
    assert placement.notice == (
        "this machine shows 7 GPUs: one worker per 2 GPUs (as --gpus all --gpus-per-trial 2); "
        "GPU 6 stays idle"
    )
    # As many GPUs as a trial takes: the group runs in this process, on all of them.
    here = place_workers(None, None, 2, n_visible_gpus=2, n_cores=4)
    assert (here.mode, here.devices, here.notice) == ("group", None, None)
    # Fewer than two groups' worth: one group here, on the first GPUs, and the rest said idle.
    three = place_workers(None, None, 2, n_visible_gpus=3, n_cores=4, visible_devices="5,6,7")
    assert (three.mode, three.devices) == ("group", "5,6")
    assert three.notice == "this machine shows 3 GPUs: training on GPUs 5,6; GPU 7 stays idle"
    # On the CPU a group's ranks share the cores.
    assert place_workers(None, None, 2, n_visible_gpus=0, n_cores=4).mode == "group"


def test_cpu_workers_hide_the_gpus_even_one_in_this_process():
    # --workers means CPU workers: --workers 1 trains here with no GPU visible, not on all of them.
    placement = place_workers(None, 1, None, n_visible_gpus=4, n_cores=4)
    assert (placement.mode, placement.devices) == ("alone", "")
    assert place_workers(None, 1, None, n_visible_gpus=0, n_cores=4).devices is None
    # Several are supervised, each with the GPUs hidden.
    slots = place_workers(None, 2, None, n_visible_gpus=4, n_cores=4).slots
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["", ""]


def test_explicit_gpus_are_planned_as_asked():
    placement = place_workers("1", None, None, n_visible_gpus=4, n_cores=8)
    # --gpus 1: one supervised worker on GPU 1, nothing said.
    assert placement.mode == "workers" and placement.notice is None
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in placement.slots] == ["1"]


def test_too_few_gpus_for_a_trial_is_a_one_line_error():
    with pytest.raises(HpsearchError) as caught:
        place_workers(None, None, 4, n_visible_gpus=2, n_cores=8)
    # The count asked for, the count seen, and what to ask instead.
    assert caught.value.message == (
        "--gpus-per-trial 4: this machine shows 2 GPUs; ask for at most 2"
    )


def test_training_alone_pins_the_first_gpu():
    # hpsearch train is one process: on a 4-GPU host it trains on the first GPU, and says so.
    assert pin_alone(4, "3,1,0,2") == (
        "3",
        "this machine shows 4 GPUs: training on GPU 3 alone (one process, no DataParallel)",
    )
    # One GPU or none: nothing to pin, nothing to say.
    assert pin_alone(1, None) == (None, None) and pin_alone(0, None) == (None, None)


# --trials-per-gpu K: K worker processes share each GPU, pinned alike; each is a process of its own
# (its own worker key, log and sampler start number).


def test_k_trials_per_gpu_start_k_workers_pinned_to_each_gpu():
    slots = plan_slots("all", None, n_visible_gpus=2, n_cores=16, trials_per_gpu=3)
    # Three workers per GPU, each seeing only its GPU, named apart, each 16 / 6 cores.
    assert [s.label for s in slots] == ["gpu0.0", "gpu0.1", "gpu0.2", "gpu1.0", "gpu1.1", "gpu1.2"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "0", "0", "1", "1", "1"]
    assert {s.env["HPSEARCH_THREADS"] for s in slots} == {"2"}
    # Named GPUs, through the parent's own visible devices.
    named = plan_slots("1", None, 2, 4, visible_devices="6,7", trials_per_gpu=2)
    assert [(s.label, s.env["CUDA_VISIBLE_DEVICES"]) for s in named] == [
        ("gpu1.0", "7"),
        ("gpu1.1", "7"),
    ]
    # K = 1 is the plan without the flag.
    assert plan_slots("all", None, 2, 16, trials_per_gpu=1) == plan_slots("all", None, 2, 16)


def test_k_trials_per_gpu_on_one_gpu_are_supervised_workers():
    placement = place_workers(None, None, None, n_visible_gpus=1, n_cores=8, trials_per_gpu=4)
    # Not this process alone: four workers on GPU 0, with nothing to say (the user asked for it).
    assert placement.mode == "workers" and placement.notice is None
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in placement.slots] == ["0"] * 4
    assert len({s.label for s in placement.slots}) == 4
    # A multi-GPU host fills every GPU, and says so.
    placement = place_workers(None, None, None, n_visible_gpus=2, n_cores=8, trials_per_gpu=2)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in placement.slots] == ["0", "0", "1", "1"]
    assert placement.notice == (
        "this machine shows 2 GPUs: 2 workers per GPU (as --gpus all --trials-per-gpu 2)"
    )
    # A worker its supervisor pinned trains here, whatever K was.
    assert place_workers(None, None, None, 1, 2, supervised=True, trials_per_gpu=2).mode == "alone"


@pytest.mark.parametrize(
    "workers, per_trial, visible, k, message",
    [
        (
            2,
            None,
            1,
            2,
            (
                "--trials-per-gpu 2 shares each GPU between 2 workers; --workers N starts CPU "
                "workers: give one of them"
            ),
        ),
        (
            None,
            2,
            4,
            2,
            (
                "--trials-per-gpu 2 puts 2 trials on each GPU; --gpus-per-trial 2 (or "
                "resources.gpus_per_trial) spreads each trial over 2 GPUs: give one of them"
            ),
        ),
        (
            None,
            None,
            0,
            3,
            "--trials-per-gpu 3: no GPU is visible here; use --workers N to run N workers on CPU",
        ),
        (None, None, 1, 0, "--trials-per-gpu: expected 1 or more trials per GPU, got 0"),
    ],
)
def test_trials_per_gpu_that_cannot_share_a_gpu_are_one_line_errors(
    workers, per_trial, visible, k, message
):
    with pytest.raises(HpsearchError) as caught:
        place_workers(None, workers, per_trial, visible, 8, trials_per_gpu=k)
    assert caught.value.message == message
