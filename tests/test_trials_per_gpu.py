"""--trials-per-gpu through the real CLI: what cannot share a GPU is one line, before any write.
(The slots it plans are tested with fake GPU counts in tests/workers/test_slots.py, the memory fit
with fake numbers in tests/trial/test_gpu_memory.py: this machine has no GPU.)"""

from __future__ import annotations

import sqlite3

import pytest

from tests.conftest import run_hpsearch, write_spec
from tests.test_cli import assert_one_line_error


def n_studies(workdir) -> int:
    with sqlite3.connect(workdir / "storage" / "hpsearch.db") as db:
        return db.execute("select count(*) from studies").fetchone()[0]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--trials-per-gpu", "2"], "--trials-per-gpu 2: no GPU is visible here"),
        (
            ["--trials-per-gpu", "2", "--workers", "2"],
            "--trials-per-gpu 2 shares each GPU between 2 workers; --workers N starts CPU workers",
        ),
        (
            ["--trials-per-gpu", "3", "--gpus-per-trial", "2"],
            "--gpus-per-trial 2 (or resources.gpus_per_trial) spreads each trial over 2 GPUs",
        ),
        (["--trials-per-gpu", "0"], "--trials-per-gpu: expected 1 or more trials per GPU, got 0"),
    ],
)
def test_run_refuses_what_cannot_share_a_gpu_before_any_write(workdir, tiny_spec, flags, message):
    write_spec(workdir, "tiny", tiny_spec)
    result = run_hpsearch("run", "--study", "tiny", *flags, cwd=workdir)
    assert_one_line_error(result, 1, message)
    # No study was created.
    assert n_studies(workdir) == 0


def test_a_worker_refuses_it_too(workdir, tiny_spec):
    write_spec(workdir, "tiny", tiny_spec)
    assert run_hpsearch("create", "--study", "tiny", cwd=workdir).returncode == 0
    result = run_hpsearch(
        "worker", "--study", "tiny", "--trials-per-gpu", "2", "--workers", "2", cwd=workdir
    )
    assert_one_line_error(result, 1, "--trials-per-gpu 2 shares each GPU between 2 workers")
    # The flag is documented in both commands' help.
    for command in ("run", "worker"):
        shown = run_hpsearch(command, "--help", cwd=workdir).stdout
        assert "--trials-per-gpu K" in shown


def test_the_fit_is_checked_against_the_studys_recorded_peaks(tmp_path, monkeypatch):
    import optuna

    from hpsearch import trial
    from hpsearch.errors import HpsearchError
    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.workers import search

    rdb = open_storage(resolve_storage_url(f"sqlite:///{tmp_path / 'fit.db'}"))
    # A GPU of 10 GiB, faked: this machine has none.
    monkeypatch.setattr(trial, "gpu_total_mb", lambda n_visible: (10_240, "Fake GPU"))
    # A new study: started, and said to be unchecked.
    assert "unchecked" in search._check_gpu_fit(rdb, "fit", 2, 1)
    study = optuna.create_study(study_name="fit", storage=rdb)
    study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"peak_gpu_memory_mb": 3000}))
    # 2 x (3000 + 768) MiB fits in 90% of 10 GiB; 3 x does not.
    assert search._check_gpu_fit(rdb, "fit", 2, 1) is None
    with pytest.raises(HpsearchError) as caught:
        search._check_gpu_fit(rdb, "fit", 3, 1)
    assert caught.value.message.endswith("of Fake GPU; use --trials-per-gpu 2 at most")
