"""``bida evaluate INPUT... OUT_DIR``: the paper's experiment on your own isotropic volumes."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

from ..errors import BidaError
from .options import (
    add_axis_option,
    add_device_option,
    add_noise_option,
    command_parser,
    damping_spec,
    positive_int,
    start_time,
)

LOGGER = logging.getLogger("bida")

EPILOG = """\
examples:
  bida evaluate mouse_T2w.nii.gz eval/ --methods cubic dccubic --species mouse
  bida evaluate /data/bids eval/ --methods dccubic bida --weights models/ --scales 2.5 5
  bida evaluate mouse_T2w.nii.gz eval-mismatch/ --profile slr --recon-profile gaussian
  bida demo-data /tmp/demo && bida evaluate /tmp/demo eval/ --methods cubic dccubic

Each method runs as 'bida participant' runs it: N4 on the slices, the method, the field put
back, the projection onto the acquired slices (data-consistent methods); --no-n4 skips N4.
A BiDA prior is scored only on volumes it was not trained on (leave-one-volume-out, from
the model cards' SHA-256 record) unless --allow-training-volumes flags them.

outputs: results.csv/.json (volume, scale, method, psnr, psnr_interior, ssim, ssim_interior,
cdsc, residual, seconds, held_out, HR-mask quality), baseline.csv (every method minus the
data-consistent baseline dccubic, paired Wilcoxon per scale), stats.csv (all pairs, alpha
0.001), figures/*.png, summary.html, volumes/ (LR, SR and masks). Rerunning into the same
OUT_DIR resumes: rows already in results.csv are skipped.
"""


def _scale(text: str) -> float:
    value = float(text)
    if not (value >= 1.0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"a scale is a factor >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``bida evaluate`` (usage errors exit 64)."""
    from ..config import (
        DEFAULT_DC_DAMPING,
        DEFAULT_SLICE_PROFILE,
        DEFAULT_STEPS,
        DEFAULT_T_START,
        SIMULATION_TBW,
    )
    from ..evaluation.harness import DEFAULT_METHODS, METHODS
    from ..evaluation.skullstrip import SPECIES
    from ..physics.profiles import PROFILE_KINDS

    p = command_parser(
        "bida evaluate",
        "Simulate thick slices (slice thickness = spacing = scale x HR voxel, "
        "SLR profile) from isotropic T2w volumes, super-resolve them with each method and "
        "score against the HR volume: PSNR and SSIM over the brain FOV, data-consistency "
        "residual, cDSC (Dice of skull-strip masks of SR vs HR) and run time.",
        EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="isotropic NIfTI files or one BIDS dataset (every isotropic T2w run; for the "
        "demo dataset also derivatives/phantom/*desc-truth_T2w)",
    )
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="output folder (resumable)")
    p.add_argument(
        "--scales",
        nargs="+",
        type=_scale,
        default=[2.5, 5.0],
        metavar="S",
        help="SR factors (default: 2.5 5, i.e. 500 and 1000 um on a 200 um grid)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(DEFAULT_METHODS),
        help="methods to score (default: cubic dccubic bida eclare; eclare is skipped when "
        "'run-eclare' is not on PATH; bida-self fits a scan-adaptive prior per volume and "
        "scale, bida-finetune fine-tunes the priors on it)",
    )
    p.add_argument(
        "--profile",
        choices=PROFILE_KINDS,
        default="slr",
        help="slice profile of the simulation (default: slr)",
    )
    p.add_argument(
        "--tbw",
        type=float,
        default=SIMULATION_TBW,
        help="time-bandwidth product of the simulated SLR slices (default: %(default)g)",
    )
    add_noise_option(
        p,
        "Rician noise on the simulated slices: standard deviation per channel as a fraction "
        "of the HR volume's 99th percentile (default: 0, noise-free)",
    )
    add_axis_option(
        p, "through-plane world axis of the simulated slices (default: AP)", default="AP"
    )
    p.add_argument(
        "--species",
        choices=SPECIES,
        default="rat",
        help="skull-strip network for cDSC (default: rat)",
    )
    p.add_argument("--weights", type=Path, help="BiDA plane-model folder (from bida train)")
    p.add_argument("--steps", type=positive_int, default=DEFAULT_STEPS, help="BiDA sampling steps")
    p.add_argument(
        "--n-samples",
        type=positive_int,
        default=1,
        metavar="K",
        help="BiDA posterior samples averaged (default: 1)",
    )
    p.add_argument("--eta", type=float, default=0.0, help="BiDA DDIM stochasticity (default: 0)")
    p.add_argument(
        "--t-start",
        type=start_time,
        default=DEFAULT_T_START,
        metavar="T",
        help="BiDA's starting flow time in (0, 1]: 1 samples from pure noise (the paper); "
        f"below 1 warm-starts from the data-consistent cubic (default: {DEFAULT_T_START:g})",
    )
    p.add_argument(
        "--recon-profile",
        "--bida-profile",
        dest="recon_profile",
        choices=PROFILE_KINDS,
        default=DEFAULT_SLICE_PROFILE,
        help="slice profile of the forward model A that dccubic, BiDA and the final "
        f"projection assume (default: {DEFAULT_SLICE_PROFILE}, as bida participant); differs "
        "from --profile to measure a profile mismatch",
    )
    p.add_argument(
        "--dc-damping",
        type=damping_spec,
        default=DEFAULT_DC_DAMPING,
        metavar="auto|LAMBDA",
        help="regularisation of dccubic's projection (auto: Wiener gain for each simulated "
        "scan's noise level; a number: Tikhonov damping, 0 exact; default: %(default)s, as "
        "bida participant)",
    )
    p.add_argument(
        "--no-n4",
        action="store_true",
        help="feed the simulated slices to the methods without the pipeline's N4",
    )
    p.add_argument(
        "--interior-mm",
        type=float,
        default=1.0,
        metavar="MM",
        help="erosion of the HR head mask that defines the interior scores (default: 1)",
    )
    p.add_argument(
        "--allow-training-volumes",
        action="store_true",
        help="score BiDA on volumes its priors were trained on (rows flagged not held out)",
    )
    p.add_argument(
        "--null-shrinkage",
        action="store_true",
        help="with --n-samples > 1: shrink BiDA's null-space detail where samples disagree",
    )
    p.add_argument(
        "--self-prior-steps",
        type=positive_int,
        metavar="N",
        help="bida-self/bida-finetune: training steps per plane (default: 1000 on CPU, 3000 on "
        "GPU; 200 for bida-finetune)",
    )
    add_device_option(p, "auto, cpu or cuda[:N] (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="BiDA random seed")
    p.add_argument(
        "--skullstrip-stride",
        type=positive_int,
        metavar="N",
        help="QUICK MODE, not the published recipe: patch stride N for the "
        "skull-strip (results are labelled)",
    )
    p.add_argument(
        "--skullstrip-slices",
        type=positive_int,
        metavar="N",
        help="QUICK MODE, not the published recipe: skull-strip only N evenly "
        "spaced coronal slices (results are labelled)",
    )
    p.add_argument(
        "--skullstrip-weights",
        type=Path,
        metavar="DIR",
        help="converted skull-strip network (default: the fetched one)",
    )
    p.add_argument("--no-cdsc", action="store_true", help="skip the skull-strip and cDSC")
    p.add_argument("--eclare-exe", default="run-eclare", help=argparse.SUPPRESS)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug messages")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``bida evaluate``; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (64)
        return int(exc.code or 0)
    if args.verbose:
        logging.getLogger("bida_app").setLevel(logging.DEBUG)
    elif not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
        logging.getLogger("bida_app").setLevel(logging.INFO)
    inputs, out_dir = args.inputs, args.out_dir
    try:
        from ..device import resolve_device
        from ..evaluation.harness import EvalSettings, run_evaluation

        device = str(resolve_device(args.device))  # once; cuda:N reaches every torch call

        settings = EvalSettings(
            scales=tuple(dict.fromkeys(args.scales)),
            methods=tuple(dict.fromkeys(args.methods)),
            profile=args.profile,
            tbw=args.tbw,
            noise=args.noise,
            axis=args.axis,
            species=args.species,
            weights=str(args.weights) if args.weights else None,
            steps=args.steps,
            n_samples=args.n_samples,
            eta=args.eta,
            null_shrinkage=args.null_shrinkage,
            t_start=args.t_start,
            recon_profile=args.recon_profile,
            dc_damping=args.dc_damping,
            n4=not args.no_n4,
            interior_mm=args.interior_mm,
            allow_training_volumes=args.allow_training_volumes,
            self_prior_steps=args.self_prior_steps,
            device=device,
            seed=args.seed,
            skullstrip_stride=args.skullstrip_stride,
            skullstrip_slices=args.skullstrip_slices,
            skullstrip_weights=str(args.skullstrip_weights) if args.skullstrip_weights else None,
            cdsc=not args.no_cdsc,
            eclare_exe=args.eclare_exe,
        )
        result = run_evaluation(inputs, out_dir, settings, progress=not args.no_progress)
    except BidaError as exc:
        sys.stderr.write(f"bida evaluate: error: {exc}\n")
        return int(exc.code)
    LOGGER.info(
        "%d run(s) scored, %d already done, %d failed; see %s",
        len(result.computed),
        len(result.skipped),
        len(result.failed),
        Path(out_dir) / "summary.html",
    )
    return 1 if result.failed else 0
