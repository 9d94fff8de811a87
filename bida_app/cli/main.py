"""Entry point of ``bida`` (console script) and ``run.py`` (container ENTRYPOINT)."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

from ..errors import BidaError, ExitCode, report_error

LOGGER = logging.getLogger("bida")

#: Sub-commands: name -> module exposing ``main(argv) -> int``.
COMMANDS = {
    "demo-data": "bida_app.cli.demo",
    "simulate": "bida_app.cli.simulate",
    "models": "bida_app.cli.models",
    "train": "bida_app.cli.train",
    "evaluate": "bida_app.cli.evaluate",
}


def setup_logging(verbosity: int) -> None:
    """INFO for bida by default; ``-v`` adds DEBUG; ``-vv`` also Nipype/pybids debug output."""
    level = logging.DEBUG if verbosity >= 1 else logging.INFO
    logging.basicConfig(
        level=logging.WARNING if verbosity < 2 else logging.DEBUG,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("bida").setLevel(level)
    logging.getLogger("bida_app").setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Run ``bida``; return (and, as a console script, exit with) the exit code."""
    as_process = argv is None  # the console script, not a call from Python (tests)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMANDS:
            setup_logging(0)
            module = importlib.import_module(COMMANDS[argv[0]])
            return int(module.main(argv[1:]))
        return _bids_app(argv, handle_signals=as_process)
    except BidaError as exc:
        report_error(str(exc))
        return int(exc.code)
    except KeyboardInterrupt:
        report_error("interrupted (SIGINT)")
        return 130
    except OSError as exc:  # disk full, I/O error, permissions on a file bida writes
        where = f"{exc.filename}: " if exc.filename else ""
        report_error(f"{where}{exc.strerror or exc} (I/O error)")
        return int(ExitCode.IO_ERROR)
    except MemoryError:
        report_error("out of memory (lower --nprocs, or give the run more memory)")
        return int(ExitCode.FAILURE)
    except Exception as exc:  # a bug: one line, the traceback only with -v
        LOGGER.debug("unexpected error", exc_info=True)
        report_error(
            f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())} "
            "(run with -v for the traceback)"
        )
        return int(ExitCode.FAILURE)


def _bids_app(argv: list[str], *, handle_signals: bool = False) -> int:
    from .runconfig import config_from_argv

    cfg = config_from_argv(argv)
    setup_logging(cfg.verbosity)
    if handle_signals:
        from . import signals

        signals.install()
    if cfg.analysis_level == "participant":
        from .participant import run_participant, runtime_env

        runtime_env(Path(cfg.work_dir or Path(cfg.output_dir) / "work").resolve())
        return run_participant(cfg)
    from .group import run_group

    return run_group(cfg)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
