"""The errors hpsearch raises, the exit codes its processes end with, the one way to quote an error.

A user's mistake or an unusable environment is an `HpsearchError`: the CLI (the only place that
prints or exits) shows it as one `Error: ...` line and exits with its code. A bug of hpsearch met
inside a trial (`is_hpsearch_bug`) is a `TrialBug`: its traceback, then one `Error: ...` line, exit
`ExitCode.BUG`. Anything else that escapes is unexpected: it shows a traceback and exits
`ExitCode.CRASH`. No click here: the translation to the terminal happens at the CLI boundary.
"""

from __future__ import annotations

import traceback
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """What a process of hpsearch says with its exit status; a supervisor decides on it alone.

    OK: done (the study's budget is spent, or the run's timeout was reached).
    USER_ERROR, SPEC_ERROR: a mistake to fix first; running again would repeat it.
    BUG: a bug of hpsearch (or a broken install) met inside a trial (`is_hpsearch_bug`); running
        again would meet it again in the next trial.
    CRASH: an unexpected error (a bug elsewhere, a lost machine resource); running again may
        succeed.
    INTERRUPTED: stopped by Ctrl-C (SIGINT); the running trials were recorded as interrupted.
    A process killed by a signal has no code of its own (Popen shows -SIGNAL): a crash too.
    """

    OK = 0
    USER_ERROR = 1
    SPEC_ERROR = 2
    BUG = 3
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


class TrialBug(HpsearchError):
    """A trial stopped by a bug of hpsearch, not by its configuration: the worker stops (exit 3)
    rather than fail trial after trial, and the trial does not count toward the budget.
    `traceback`, the original error's, goes to the trial's record and (printed above the `Error:`
    line) to the worker's log."""

    exit_code = ExitCode.BUG

    def __init__(self, message: str, traceback: str = ""):
        super().__init__(message)
        self.traceback = traceback


# The types a mistake in Python code raises (a missing key or attribute, a wrong call, a typo); a
# library raises them too, for values it refuses, which is a configuration's failure.
_BUG_TYPES = (KeyError, AttributeError, TypeError, NameError)
_PACKAGE_DIR = Path(__file__).resolve().parent


def is_hpsearch_bug(error: BaseException) -> bool:
    """Whether `error`, raised while a trial ran, is a bug of hpsearch rather than a failure of the
    trial's configuration.

    It is a bug when an import failed (the import system's ImportError, which names the module: a
    missing or broken package, which every trial would meet), or when a KeyError, AttributeError,
    TypeError or NameError's innermost traceback frame (where it was raised; a C function called
    from Python adds no frame) is a module of the hpsearch package. The same types raised inside
    torch, transformers or peft are their refusal of a value (a configuration's failure), as is an
    ImportError a library raises itself for an option that needs a package this install lacks (an
    8-bit optimizer without bitsandbytes: another configuration trains), and every other type: out
    of memory, a NaN, a ValueError.
    """
    if isinstance(error, ImportError):
        return error.name is not None
    if not isinstance(error, _BUG_TYPES):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE_DIR)


def describe_bug(error: BaseException, where: str) -> TrialBug:
    """The TrialBug that reports `error` (an `is_hpsearch_bug` one) met by `where` ("trial 3")."""
    return TrialBug(
        f"{where} stopped on a bug in hpsearch: {type(error).__name__}: {first_line(error)} "
        "(traceback above and in the trial's user attribute 'traceback'; the trial does not count "
        "toward the budget)",
        "".join(traceback.format_exception(error)),
    )


class BudgetFull(Exception):
    """Not a user error: the storage refused to create a trial, every slot of the study's budget
    being counted or held by a running or waiting trial. The worker loop checks the budget again."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an error's message, or its type's name when it has none."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:limit]
