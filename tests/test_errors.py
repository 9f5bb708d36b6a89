"""How an error is quoted in one line, and the exit codes hpsearch's processes end with."""

from __future__ import annotations

from hpsearch.errors import ExitCode, HpsearchError, SpecError, TrialBug, first_line


def test_first_line_of_any_error_even_an_empty_one():
    # The first non-empty line, stripped; an error with no message at all is named by its type.
    assert first_line(OSError("cannot read\nsecond line")) == "cannot read"
    assert first_line(ValueError("\n  \n  the real reason  \nmore")) == "the real reason"
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(RuntimeError("x" * 500), limit=10) == "x" * 10


def test_each_kind_of_error_has_its_exit_code():
    # Mistakes exit 1 (2 for a spec) and a supervisor gives up on them; a crash exits 70, restarted.
    assert HpsearchError("m").exit_code == ExitCode.USER_ERROR == 1
    assert SpecError("m").exit_code == ExitCode.SPEC_ERROR == 2
    assert (ExitCode.CRASH, ExitCode.INTERRUPTED) == (70, 130)
    # A bug of hpsearch met in a trial exits 3: the supervisor gives up on it, as on a mistake.
    assert TrialBug("m").exit_code == ExitCode.BUG == 3
    assert HpsearchError("one line").message == "one line"
