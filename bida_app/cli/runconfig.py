"""The :class:`~bida_app.config.RunConfig` of a BIDS-App command line, with ``--config-file``.

``--config-file PATH`` reloads the ``config.toml`` a previous run wrote into its work folder:
the file's values become the parser's defaults, so every option given on the command line
wins over the file. Each value passes the same checks (type, choices) as on the command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import device
from ..config import RunConfig
from ..errors import BidaError, ExitCode
from .parser import build_parser

#: Options always given on the command line (the BIDS-App positionals), never from the file.
POSITIONALS = ("bids_dir", "output_dir", "analysis_level")


def config_from_argv(argv: list[str]) -> RunConfig:
    """Parse the BIDS-App command line (and its ``--config-file``) into a RunConfig.

    Parameters
    ----------
    argv : list of str
        The arguments after ``bida``.

    Returns
    -------
    RunConfig
        Options left unset resolved: ``--nprocs`` 1, ``--omp_nthreads`` from the CPUs.

    Raises
    ------
    BidaError
        Exit 64 when the configuration file is missing, unreadable or holds a bad value.
    SystemExit
        Exit 64 (17 for an unknown analysis level) on a usage error, as the parser does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config_file is not None:
        parser.set_defaults(**file_defaults(parser, args.config_file))
        args = parser.parse_args(argv)
    if args.omp_nthreads is None:
        # threads use the machine by default; parallel workflows (MultiProc) stay opt-in:
        # the signal, lock and kill -9 guarantees are tested for the serial plugin
        args.omp_nthreads = device.default_omp_nthreads(args.nprocs or device.available_cpus())
    return RunConfig.from_namespace(args)


def file_defaults(parser: argparse.ArgumentParser, path: Path) -> dict[str, Any]:
    """Parser defaults from a ``config.toml``: each value checked as the option's argument.

    Values that mean "unset" (empty, zero, false: the fields' defaults) are left to the
    parser, so the options whose default is computed (``--target_resolution``) stay computed.
    """
    values = RunConfig.read_toml(path)
    actions = {a.dest: a for a in parser._actions}
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        action = actions.get(key)
        if key in POSITIONALS or action is None:
            continue
        if not value and value == RunConfig.default(key):
            continue
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise BidaError(f"{path}: {key} = {value!r} is not one of {choices}", ExitCode.USAGE)
        if callable(action.type):
            try:
                value = action.type(str(value))
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise BidaError(f"{path}: {key} = {value!r}: {exc}", ExitCode.USAGE) from None
        defaults[key] = value
    return defaults
