"""Exit codes (BIDS-Apps execution spec) and the error type that carries them."""

from __future__ import annotations

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
