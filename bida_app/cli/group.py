"""Group level: ``group_report.html`` and ``group_T2w.tsv`` from the output folder only."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import RunConfig
from ..errors import BidaError, ExitCode

LOGGER = logging.getLogger("bida")


def run_group(cfg: RunConfig) -> int:
    """Write the group QC report of ``cfg.output_dir``; return the exit code.

    Reads nothing but ``output_dir`` (derivatives, sidecars, per-run QC files and
    ``logs/bida_status.json``). Runs the participant level failed on are listed in the report.

    Raises
    ------
    BidaError
        Exit 66 when the folder is missing or holds nothing to report.
    """
    from ..reports.group import write_group_report

    out_dir = Path(cfg.output_dir).resolve()
    if not out_dir.is_dir():
        raise BidaError(
            f"{out_dir}: output folder does not exist; run the participant level first",
            ExitCode.MISSING_INPUT,
        )
    paths = write_group_report(out_dir)
    LOGGER.info("group report written: %s (table: %s)", paths["html"], paths["tsv"])
    return int(ExitCode.OK)
