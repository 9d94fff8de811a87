"""``bida simulate IN OUT``: thick-slice (LR) volumes from isotropic ones, with the operator A."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..config import SIMULATION_TBW
from ..errors import BidaError
from .options import add_axis_option, add_noise_option, command_parser, positive_float

LOGGER = logging.getLogger("bida")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``simulate`` options to a parser (or sub-parser) and return it."""
    p.add_argument(
        "input",
        metavar="IN",
        type=Path,
        help="isotropic NIfTI file, or a BIDS dataset (every isotropic T2w run)",
    )
    p.add_argument(
        "output",
        metavar="OUT",
        type=Path,
        help="LR NIfTI file (.nii/.nii.gz; a JSON sidecar is written beside it), or an output "
        "folder when IN is a BIDS dataset (same relative file names)",
    )
    p.add_argument(
        "--thickness",
        type=positive_float,
        required=True,
        metavar="MM",
        help="slice thickness in mm (FWHM of the slice profile)",
    )
    p.add_argument(
        "--spacing",
        type=positive_float,
        metavar="MM",
        help="distance between slice centres in mm (default: the thickness, i.e. no gap)",
    )
    add_axis_option(
        p,
        "through-plane direction in world (RAS) terms, whatever the voxel order on disk",
        required=True,
    )
    p.add_argument(
        "--profile",
        choices=("slr", "gaussian", "boxcar"),
        default="slr",
        help="slice profile: Shinnar-Le Roux pulse (Bloch-simulated), Gaussian or ideal slab",
    )
    p.add_argument(
        "--tbw",
        type=positive_float,
        default=SIMULATION_TBW,
        help="time-bandwidth product of the SLR pulse",
    )
    p.add_argument(
        "--effective-width",
        "--effective_width",
        dest="effective",
        action="store_true",
        help="narrow the kernel to sqrt(thickness^2 - voxel^2) to account for the HR voxel's "
        "own blur (exact for Gaussian profiles only)",
    )
    add_noise_option(
        p,
        "Rician noise: standard deviation per channel as a fraction of the HR volume's 99th "
        "percentile (e.g. 0.02; default 0: noise-free)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the noise")
    p.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        metavar="LABEL",
        help="BIDS input only: subjects to simulate (without 'sub-')",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``bida simulate`` (usage errors exit 64)."""
    return add_arguments(
        command_parser(
            "bida simulate",
            "Simulate thick-slice acquisitions from isotropic T2w volumes: "
            "convolve with the slice profile along one axis and sample at the slice spacing. "
            "Writes the LR volume with a correct header and a JSON sidecar of the parameters.",
            "examples:\n"
            "  bida simulate hr_T2w.nii.gz lr_T2w.nii.gz --thickness 0.5 --axis AP\n"
            "  bida simulate iso_bids/ thick_bids/ --thickness 1.0 --spacing 1.2 --axis SI",
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Run ``bida simulate``; return the exit code (0, or that of the error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (64)
        return int(exc.code or 0)
    params = {
        "thickness_mm": args.thickness,
        "spacing_mm": args.spacing or args.thickness,
        "axis": args.axis,
        "profile": args.profile,
        "tbw": args.tbw,
        "effective": args.effective,
        "noise": args.noise,
        "seed": args.seed,
    }
    try:
        from ..physics.simulate import simulate_bids, simulate_file

        if args.input.is_dir():
            written = simulate_bids(
                args.input, args.output, participant_label=args.participant_label, **params
            )
            LOGGER.info("simulated %d run(s) into %s", len(written), args.output)
        else:
            if args.participant_label:
                LOGGER.warning("--participant-label ignored: IN is a single file")
            simulate_file(args.input, args.output, **params)
    except BidaError as exc:
        sys.stderr.write(f"bida simulate: error: {exc}\n")
        return int(exc.code)
    return 0
