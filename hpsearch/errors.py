"""User-facing errors: one line on stderr, a non-zero exit code, no traceback.

Anything else that escapes is a bug and may show a traceback (``--debug`` shows one for these too).
"""

import click


class HpsearchError(click.ClickException):
    """A user's mistake or an unusable environment; exits 1."""

    exit_code = 1


class SpecError(HpsearchError):
    """The study spec is invalid; exits 2 like a usage error."""

    exit_code = 2


class StorageError(HpsearchError):
    """The storage URL is malformed, its driver is missing, or the database cannot be reached."""


class StudyError(HpsearchError):
    """The study is unknown, or its stored spec does not match the one given."""
