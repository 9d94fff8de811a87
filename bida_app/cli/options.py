"""What every ``bida`` command line shares: the parser class, help format, argument types
and the options several commands take (``--device``, ``--axis``).

Kept free of heavy imports so that ``bida --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from ..device import check_device_spec
from ..errors import BidaError, ExitCode

ANALYSIS_LEVELS = ("participant", "group")
#: Through-plane directions in world (RAS) terms, as ``--axis`` takes them.
AXIS_CHOICES = ("LR", "AP", "SI")


class BidaArgumentParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors exit with code 64 and a one-line message."""

    def error(self, message: str):  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} -h')\n")
        raise SystemExit(int(ExitCode.USAGE))

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ns = super().parse_args(args, namespace)
        level = getattr(ns, "analysis_level", None)
        if level is not None and level not in ANALYSIS_LEVELS:
            sys.stderr.write(
                f"{self.prog}: error: unknown analysis level {level!r} "
                f"(choose from {', '.join(ANALYSIS_LEVELS)})\n"
            )
            raise SystemExit(int(ExitCode.UNKNOWN_LEVEL))
        return ns


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows an option's default only where it says something: not for flags, not for
    ``None``/empty defaults (their help explains what happens), not twice."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text
            or action.option_strings == []
            or action.nargs == 0
            or default in (None, "", [], argparse.SUPPRESS)
            or isinstance(default, bool)
        ):
            return text
        return text + " (default: %(default)s)"


def command_parser(
    prog: str, description: str, epilog: str, formatter_class: type = HelpFormatter
) -> BidaArgumentParser:
    """The parser of a ``bida`` command: usage errors exit 64, examples kept as written."""
    return BidaArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=formatter_class
    )


def finite_float(text: str) -> float:
    """A finite number."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a length in mm, a factor)."""
    value = finite_float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a damping, a noise level)."""
    value = finite_float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def damping_spec(text: str) -> float | str:
    """``auto``, or a finite number >= 0 (``--dc_damping``)."""
    return "auto" if text.strip().lower() == "auto" else non_negative_float(text)


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of steps, samples, processes)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def start_time(text: str) -> float:
    """A sampler start time ``T`` in (0, 1] (``bida evaluate --t-start``)."""
    value = finite_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def device_spec(text: str) -> str:
    """A ``--device`` value (auto, cpu, cuda or cuda:N), lower case; torch is not imported."""
    try:
        return check_device_spec(text)
    except BidaError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_device_option(p: Any, help: str, default: str = "auto") -> argparse.Action:
    """``--device``: checked at parse time, resolved to a torch device once by the command."""
    return p.add_argument("--device", type=device_spec, default=default, help=help)


def add_noise_option(p: Any, help: str) -> argparse.Action:
    """``--noise LEVEL``: Rician noise on simulated slices, a finite number >= 0 (default 0)."""
    return p.add_argument(
        "--noise", type=non_negative_float, default=0.0, metavar="LEVEL", help=help
    )


def add_axis_option(p: Any, help: str, **kwargs: Any) -> argparse.Action:
    """``--axis {LR,AP,SI}`` (any case): a through-plane direction in world terms."""
    return p.add_argument("--axis", type=str.upper, choices=AXIS_CHOICES, help=help, **kwargs)
