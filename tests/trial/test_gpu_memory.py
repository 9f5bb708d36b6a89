"""Whether K trials fit on one GPU, from the peaks the study's trials recorded (numbers faked here:
no GPU on this machine)."""

from __future__ import annotations

import optuna
import pytest

from hpsearch.errors import HpsearchError
from hpsearch.trial.gpu_memory import (
    CONTEXT_MB,
    PEAK_GPU_MEMORY_ATTR,
    check_fit,
    peak_gpu_memory,
    recorded_peaks,
)

H100_MB = 81_559  # torch.cuda.get_device_properties(0).total_memory of an H100 80GB, in MiB


def test_k_trials_that_fit_start_silently():
    # 4 x (10 GiB + a context) is well under 90% of an H100.
    assert check_fit(4, [(0, 10_240), (1, 8_000)], H100_MB, "NVIDIA H100") is None


def test_k_trials_that_do_not_fit_are_one_line_saying_how_many_would():
    with pytest.raises(HpsearchError) as caught:
        check_fit(4, [(0, 8_000), (3, 20_480)], H100_MB, "NVIDIA H100 80GB HBM3")
    # The largest peak counts (trial 3's), with the context of each process; 3 of them fit.
    assert caught.value.message == (
        "--trials-per-gpu 4: 4 x (20.0 GiB peak of trial 3 + 0.8 GiB per process) = 83.0 GiB does "
        "not fit in 90% of the 79.6 GiB of NVIDIA H100 80GB HBM3; use --trials-per-gpu 3 at most"
    )
    assert "\n" not in caught.value.message


def test_where_not_even_two_fit_the_advice_is_one_trial_per_gpu():
    with pytest.raises(HpsearchError) as caught:
        check_fit(2, [(5, 40_000)], H100_MB, "NVIDIA H100")
    assert caught.value.message.endswith("; leave --trials-per-gpu out")


def test_the_boundary_counts_the_headroom_and_the_context():
    # Exactly 90% of the GPU for K processes: fits; one MiB more: does not.
    per_trial = 0.9 * 10_000 / 3
    assert check_fit(3, [(0, int(per_trial) - CONTEXT_MB)], 10_000, "g") is None
    with pytest.raises(HpsearchError):
        check_fit(3, [(0, int(per_trial) - CONTEXT_MB + 1)], 10_000, "g")


def test_without_a_record_the_fit_is_said_to_be_unchecked():
    assert check_fit(2, [], H100_MB, "NVIDIA H100") == (
        "--trials-per-gpu 2: whether 2 trials fit on one GPU is unchecked until a trial has "
        "recorded its peak GPU memory"
    )


def test_the_peaks_come_from_the_trials_that_recorded_one():
    trials = [
        optuna.trial.create_trial(value=0.5, user_attrs={PEAK_GPU_MEMORY_ATTR: 1200}),
        optuna.trial.create_trial(value=0.6, user_attrs={"device": "cpu (2 threads, bf16)"}),
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, user_attrs={PEAK_GPU_MEMORY_ATTR: 3000}
        ),
    ]
    for number, trial in enumerate(trials):
        trial.number = number
    assert recorded_peaks(trials) == [(0, 1200), (2, 3000)]


def test_a_trial_on_the_cpu_records_no_gpu_peak():
    assert peak_gpu_memory() == {}
