"""The supervisor decides on a worker's exit code: restart a crash, give up on a mistake."""

from __future__ import annotations

import pytest

from hpsearch.errors import ExitCode, HpsearchError
from hpsearch.workers import decide
from hpsearch.workers.supervisor import DONE, GIVE_UP, RESTART


@pytest.mark.slow
def test_a_worker_that_keeps_crashing_is_restarted_then_given_up(workdir, tiny_spec):
    from hpsearch.spec import parse_spec
    from hpsearch.storage import STORAGE_ENV, open_storage, resolve_storage_url
    from hpsearch.study import open_study
    from hpsearch.workers import MAX_RESTARTS, Supervisor, WorkerSlot

    url = f"sqlite:///{workdir / 'hp.db'}"
    open_study(open_storage(resolve_storage_url(url)), "crashy", parse_spec(tiny_spec, "t"))
    # A real worker process that crashes at start-up every time (its thread count is no number).
    slot = WorkerSlot("cpu0", {"HPSEARCH_THREADS": "lots"})
    messages: list[str] = []
    supervisor = Supervisor(
        [slot],
        ["worker", "--study", "crashy", "--supervised"],
        {STORAGE_ENV: url},
        workdir / "logs",
        report=messages.append,
        on_poll=lambda: None,
    )
    with pytest.raises(HpsearchError) as caught:
        supervisor.run()
    # Restarted MAX_RESTARTS times, then given up, with the crash's last line as the reason.
    restarts = [m for m in messages if "restarting" in m]
    assert len(restarts) == MAX_RESTARTS
    assert "invalid literal for int() with base 10: 'lots'" in restarts[0]
    # A crash exits 70 (ExitCode.CRASH), whatever its log says last.
    assert caught.value.message.startswith(
        "1 of 1 workers gave up (cpu0: died 4 times, last with exit code 70"
    )


def test_the_exit_code_alone_decides():
    # Done; a mistake, a bug met in a trial or an interrupt would repeat: give up; a crash or a
    # signal may not: restart.
    assert decide(ExitCode.OK) == DONE
    assert (
        decide(ExitCode.USER_ERROR)
        == decide(ExitCode.SPEC_ERROR)
        == decide(ExitCode.BUG)
        == decide(ExitCode.INTERRUPTED)
        == GIVE_UP
    )
    assert decide(ExitCode.CRASH) == decide(-9) == decide(-11) == decide(137) == RESTART


@pytest.mark.slow
def test_a_worker_with_a_mistake_is_given_up_at_once(workdir):
    from hpsearch.storage import STORAGE_ENV, open_storage, resolve_storage_url
    from hpsearch.workers import Supervisor, WorkerSlot

    url = f"sqlite:///{workdir / 'hp.db'}"
    open_storage(resolve_storage_url(url))
    messages: list[str] = []
    # A real worker process asked to join a study that is not there: exit code 1, a user error.
    supervisor = Supervisor(
        [WorkerSlot("cpu0", {})],
        ["worker", "--study", "nope", "--supervised"],
        {STORAGE_ENV: url},
        workdir / "logs",
        report=messages.append,
        on_poll=lambda: None,
    )
    with pytest.raises(HpsearchError) as caught:
        supervisor.run()
    # Not restarted: the same mistake would end the same way.
    assert [m for m in messages if "restarting" in m] == []
    assert caught.value.message.startswith(
        "1 of 1 workers gave up (cpu0: exit code 1 (Error: no study 'nope'"
    )
