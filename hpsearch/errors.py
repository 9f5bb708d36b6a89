"""The errors hpsearch raises, the exit codes its processes end with, the one way to quote an error.

A user's mistake or an unusable environment is an `HpsearchError`: the CLI (the only place that
prints or exits) shows it as one `Error: ...` line and exits with its code. Anything else that
escapes is a bug: it shows a traceback and exits `ExitCode.CRASH`. No click here: the translation to
the terminal happens at the CLI boundary.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a process of hpsearch says with its exit status; a supervisor decides on it alone.

    OK: done (the study's budget is spent, or the run's timeout was reached).
    USER_ERROR, SPEC_ERROR: a mistake to fix first; running again would repeat it.
    CRASH: an unexpected error (a bug, a lost machine resource); running again may succeed.
    INTERRUPTED: stopped by Ctrl-C (SIGINT); the running trials were recorded as interrupted.
    A process killed by a signal has no code of its own (Popen shows -SIGNAL): a crash too.
    """

    OK = 0
    USER_ERROR = 1
    SPEC_ERROR = 2
    CRASH = 70  # EX_SOFTWARE in sysexits.h
    INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class HpsearchError(Exception):
    """A user's mistake or an unusable environment; exits 1."""

    exit_code = ExitCode.USER_ERROR

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SpecError(HpsearchError):
    """The study spec is invalid; exits 2 like a usage error."""

    exit_code = ExitCode.SPEC_ERROR


class StorageError(HpsearchError):
    """The storage URL is malformed, its driver is missing, or the database cannot be reached."""


class StudyError(HpsearchError):
    """The study is unknown, or its stored spec does not match the one given."""


class TrialFailed(Exception):
    """Not a user error: ends one trial FAIL with a recorded reason, and the study goes on."""


class BudgetFull(Exception):
    """Not a user error: the storage refused to create a trial, every slot of the study's budget
    being counted or held by a running or waiting trial. The worker loop checks the budget again."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an error's message, or its type's name when it has none."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:limit]
