"""Group level: summarise the derivatives of every participant (QC reports arrive later)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import RunConfig
from ..errors import BidaError, ExitCode

LOGGER = logging.getLogger("bida")


def run_group(cfg: RunConfig) -> int:
    """Check that ``output_dir`` holds bida derivatives; reports are built by ``reports``."""
    out_dir = Path(cfg.output_dir).resolve()
    sidecars = sorted(out_dir.glob("sub-*/**/anat/*_desc-*_T2w.json"))
    if not sidecars:
        raise BidaError(
            f"{out_dir}: no bida derivatives found; run the participant level first",
            ExitCode.MISSING_INPUT,
        )
    try:
        from ..reports.group import write_group_report
    except ImportError:
        LOGGER.info("%d derivative sidecars found in %s", len(sidecars), out_dir)
        return 0
    write_group_report(out_dir)
    return 0
