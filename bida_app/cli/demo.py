"""``bida demo-data DIR``: write the synthetic rodent BIDS demo dataset."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .options import command_parser

LOGGER = logging.getLogger("bida")


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``bida demo-data``."""
    p = command_parser(
        "bida demo-data",
        "Write a small synthetic rat BIDS dataset (phantoms).",
        "example:\n  bida demo-data demo/bids --small && bida demo/bids demo/out participant",
    )
    p.add_argument("out_dir", type=Path, help="folder to create")
    p.add_argument(
        "--small", action="store_true", help="tiny phantoms (60x60x30 voxels) for quick tests"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``bida demo-data``."""
    from ..demo.dataset import make_demo_dataset

    args = build_parser().parse_args(argv)
    shape = (60, 60, 30) if args.small else (100, 120, 56)
    path = make_demo_dataset(args.out_dir, shape=shape)
    LOGGER.info("demo dataset ready: bida %s OUT_DIR participant", path)
    return 0
