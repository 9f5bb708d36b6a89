"""The effective batch (examples per optimizer step) and the accumulation that reproduces a trial's
on fewer devices: arithmetic, checked with fake device counts (no GPU needed)."""

from __future__ import annotations

import pytest

from hpsearch.study import effective_batch, reproducing_accumulation


@pytest.mark.parametrize(
    "per_device, accumulation, n_processes, gpus_per_process, expected",
    [
        (16, 1, 1, 1, 16),  # one process on one device (or the CPU)
        (16, 2, 1, 1, 32),  # accumulation multiplies it
        (16, 1, 4, 1, 64),  # DDP: 4 ranks of 16 examples each
        (16, 2, 2, 1, 64),  # DDP and accumulation
        (16, 1, 1, 4, 64),  # DataParallel over 4 GPUs: Trainer's train_batch_size is 16 x 4
    ],
)
def test_effective_batch_counts_every_device(
    per_device, accumulation, n_processes, gpus_per_process, expected
):
    # Examples per optimizer step: per device x devices x accumulation.
    assert effective_batch(per_device, accumulation, n_processes, gpus_per_process) == expected


@pytest.mark.parametrize(
    "accumulation, trial_devices, devices, expected",
    [
        (1, 1, 1, 1),  # trained alone, trained alone again: unchanged
        (1, 2, 1, 2),  # a 2-GPU DDP trial on one device: twice the accumulation
        (3, 4, 1, 12),
        (2, 4, 2, 4),  # 4 ranks x 2 on 2 devices: 4 steps accumulated
        (1, 2, 2, 1),
    ],
)
def test_accumulation_reproduces_the_trials_effective_batch(
    accumulation, trial_devices, devices, expected
):
    got = reproducing_accumulation(accumulation, trial_devices, devices)
    # The same examples per optimizer step as the trial: per device x devices x accumulation.
    assert got == expected
    assert effective_batch(16, got, devices) == effective_batch(16, accumulation, trial_devices)


def test_more_devices_than_the_trials_batch_splits_into_is_refused():
    from hpsearch.errors import HpsearchError

    with pytest.raises(HpsearchError) as caught:
        reproducing_accumulation(1, 2, 4)
    # 2 x 1 steps of the trial cannot be spread over 4 devices: said, with the numbers.
    assert caught.value.message == (
        "trial trained on 2 devices with accumulation 1: its effective batch cannot be "
        "reproduced on 4 devices"
    )
