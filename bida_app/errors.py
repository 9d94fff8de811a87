"""Exit codes (BIDS-Apps execution spec) and the error type that carries them."""

from __future__ import annotations

import sys
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes recommended by the BIDS-Apps execution specification."""

    OK = 0
    FAILURE = 1
    BIDS_INVALID = 16
    UNKNOWN_LEVEL = 17
    NO_DATA = 18
    USAGE = 64
    BAD_DATA = 65
    MISSING_INPUT = 66
    CANT_CREATE = 73
    IO_ERROR = 74
    TEMP_FAILURE = 75


class BidaError(Exception):
    """An error the command line reports as one line with a specific exit code.

    Parameters
    ----------
    message : str
        One-line, user-facing description naming the file and the problem.
    code : ExitCode
        Exit code the process should return.
    """

    def __init__(self, message: str, code: ExitCode = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.code = ExitCode(code)


class BadDataError(BidaError):
    """An input file is unreadable or unusable (exit 65)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.BAD_DATA)


class InputErrors(BidaError):
    """Every problem found while checking the inputs up front, one line each.

    The exit code is that of the first problem.

    Parameters
    ----------
    errors : list of BidaError
        The problems, in the order found (at least one).
    """

    def __init__(self, errors: list[BidaError]) -> None:
        super().__init__("\n".join(str(e) for e in errors), errors[0].code)
        self.errors = list(errors)


def raise_collected(errors: list[BidaError]) -> None:
    """Raise the one error, or :class:`InputErrors` for several; nothing if none."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InputErrors(errors)


def report_error(message: str) -> None:
    """Print an error to stderr, one line per problem (not through logging: always shown)."""
    for line in str(message).splitlines() or [""]:
        sys.stderr.write(f"bida: error: {line}\n")
    sys.stderr.flush()
