"""Command-line parser of the BIDS App (``bida bids_dir output_dir analysis_level``)."""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..config import METHODS, PRIORS, RunConfig
from ..device import available_cpus
from .options import (
    BidaArgumentParser,
    HelpFormatter,
    add_device_option,
    damping_spec,
    finite_float,
    positive_float,
    positive_int,
)


def build_parser() -> BidaArgumentParser:
    """The BIDS-App parser. Underscore and hyphen spellings of options are both accepted."""
    p = BidaArgumentParser(
        prog="bida",
        description="bida: zero-shot super-resolution of thick-slice rodent T2w MRI "
        "(Biplanar DDNM Averaging).\nOther commands: bida demo-data | simulate | models | "
        "train | evaluate (run 'bida COMMAND -h').",
        epilog="examples:\n"
        "  bida /data/bids /data/out participant --participant_label 01 02\n"
        "  bida /data/bids /data/out participant --method bida --device cuda -w /scratch/w\n"
        "  bida /data/bids /data/out group\n"
        "exit codes: 0 ok, 1 failure, 16 BIDS invalid, 17 unknown level, 18 no data, "
        "64 usage,\n65 bad data, 66 missing input, 73 cannot create output, 75 busy (another "
        "run holds\nthe lock), 130/143 interrupted (docs/failure-modes.md).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("bids_dir", type=Path, help="root of the input BIDS dataset (read only)")
    p.add_argument("output_dir", type=Path, help="output folder (a BIDS derivatives dataset)")
    p.add_argument(
        "analysis_level",
        metavar="{participant,group}",
        help="participant: super-resolve runs; group: QC report over outputs",
    )

    g = p.add_argument_group("selecting data")
    g.add_argument(
        "--participant_label",
        "--participant-label",
        nargs="+",
        default=RunConfig.default("participant_label"),
        metavar="LABEL",
        help="participants to process (with or without 'sub-')",
    )
    g.add_argument(
        "--session_label",
        "--session-label",
        nargs="+",
        default=RunConfig.default("session_label"),
        metavar="LABEL",
        help="sessions to process (with or without 'ses-')",
    )
    g = p.add_argument_group("super-resolution")
    g.add_argument(
        "--method",
        choices=list(METHODS),
        default=RunConfig.default("method"),
        help="dccubic: cubic B-spline, then the exact projection onto the acquired slices "
        "(data-consistent baseline, default); cubic: plain cubic B-spline; bida: BiDA "
        "diffusion SR",
    )
    g.add_argument(
        "--target_resolution",
        "--target-resolution",
        type=positive_float,
        default=None,
        metavar="MM",
        help="through-plane voxel size of the output (default: in-plane size)",
    )
    g.add_argument(
        "--steps", type=positive_int, default=RunConfig.default("steps"), help="DDIM steps (bida)"
    )
    g.add_argument(
        "--eta",
        type=finite_float,
        default=RunConfig.default("eta"),
        help="DDIM stochasticity (bida)",
    )
    g.add_argument(
        "--n_samples",
        "--n-samples",
        type=positive_int,
        default=RunConfig.default("n_samples"),
        help="posterior samples; >1 also writes a desc-bidaStd uncertainty map",
    )
    g.add_argument(
        "--slice_profile",
        "--slice-profile",
        # physics.profiles.PROFILE_KINDS, spelled out to keep scipy out of `bida --help`
        # (tests/test_cli_participant.py checks the two agree)
        choices=["gaussian", "slr", "boxcar"],
        default=RunConfig.default("slice_profile"),
        help="slice profile of the forward model A of dccubic, BiDA and the final projection "
        "(FWHM = slice thickness): gaussian (the paper's model, default), slr (an SLR "
        "excitation of time-bandwidth product 4: better when the slices are sharp-edged) or "
        "boxcar",
    )
    g.add_argument(
        "--dc_damping",
        "--dc-damping",
        type=damping_spec,
        default=RunConfig.default("dc_damping"),
        metavar="auto|LAMBDA",
        help="regularisation of dccubic's projection onto the slices: auto (default) holds "
        "back the part of the correction that is the scan's own noise (a Wiener gain for the "
        "noise level estimated from the scan; exact on noise-free slices); a number LAMBDA is "
        "a Tikhonov damping relative to the mean of diag(AA^T) (0: the exact projection; 0.1 "
        "also tolerates sharper slices than the Gaussian profile assumes)",
    )
    g.add_argument(
        "--null_shrinkage",
        "--null-shrinkage",
        action="store_true",
        help="with --n_samples > 1: shrink the prior's null-space detail where the samples "
        "disagree (output stays consistent with the data)",
    )
    g.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of plane models from 'bida train' (default: shipped weights)",
    )
    g.add_argument(
        "--prior",
        choices=PRIORS,
        default=RunConfig.default("prior"),
        help="shipped/--weights priors; self: priors fitted on the scan's own slices; "
        "finetune: the shipped/--weights priors fine-tuned on them (200 steps per plane)",
    )
    g.add_argument(
        "--self_prior_steps",
        "--self-prior-steps",
        type=positive_int,
        default=None,
        metavar="N",
        help="training steps per plane of --prior self (default: 1000 on CPU, 3000 on GPU) "
        "or --prior finetune (default: 200)",
    )
    g.add_argument("--seed", type=int, default=RunConfig.default("seed"), help="random seed")

    g = p.add_argument_group("input headers and preprocessing")
    g.add_argument(
        "--anisotropy_threshold",
        "--anisotropy-threshold",
        type=positive_float,
        default=RunConfig.default("anisotropy_threshold"),
        metavar="R",
        help="max/min voxel-size ratio above which a run is processed",
    )
    g.add_argument(
        "--header_scale",
        "--header-scale",
        type=positive_float,
        default=RunConfig.default("header_scale"),
        metavar="F",
        help="multiply voxel sizes by this factor (0.1 fixes x10 rodent headers)",
    )

    g.add_argument(
        "--no_n4", "--no-n4", dest="n4", action="store_false", help="skip N4 bias-field correction"
    )

    g = p.add_argument_group("resources and execution")
    g.add_argument(
        "-w",
        "--work_dir",
        "--work-dir",
        type=Path,
        default=None,
        help="work directory (default: OUTPUT_DIR/work); reused to resume",
    )
    add_device_option(
        g,
        "torch device for bida: auto, cpu, cuda or cuda:N; auto falls back to the CPU with a "
        "warning",
        default=RunConfig.default("device"),
    )
    g.add_argument(
        "--nprocs",
        "--n_cpus",
        "--n-cpus",
        type=positive_int,
        default=None,
        help="processes for the MultiProc plugin (default 1: runs one after the other)",
    )
    g.add_argument(
        "--omp_nthreads",
        "--omp-nthreads",
        type=positive_int,
        default=None,
        help="threads per process for torch, ITK and BLAS (default: min(8, --nprocs or the "
        f"CPUs available to this process, here {available_cpus()}))",
    )
    g.add_argument(
        "--mem_gb",
        "--mem-gb",
        type=positive_float,
        default=None,
        help="memory limit for the scheduler (GB)",
    )
    g.add_argument(
        "--plugin", default=None, help="Nipype plugin (Linear, MultiProc, SLURM, SGE, PBS, ...)"
    )
    g.add_argument(
        "--plugin_args",
        "--plugin-args",
        default=None,
        help='plugin arguments as JSON, e.g. \'{"sbatch_args": "-p gpu"}\'',
    )
    g.add_argument(
        "--write_graph",
        "--write-graph",
        action="store_true",
        help="write the workflow graph into the work directory",
    )
    g.add_argument(
        "--stop_on_first_crash",
        "--stop-on-first-crash",
        action="store_true",
        help="stop at the first failing node",
    )

    g = p.add_argument_group("outputs")
    g.add_argument("--overwrite", action="store_true", help="recompute existing outputs")
    g.add_argument(
        "--reports_only",
        "--reports-only",
        action="store_true",
        help="only regenerate reports from existing derivatives",
    )

    g = p.add_argument_group("other")
    g.add_argument(
        "--config_file",
        "--config-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="reload the options of a previous run (its WORK_DIR/config.toml); options "
        "given on the command line win",
    )
    g.add_argument(
        "--skip_bids_validator",
        "--skip-bids-validator",
        action="store_true",
        help="do not validate the input dataset with pybids",
    )
    g.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        default=0,
        help="more messages (-vv for debug output of Nipype and pybids)",
    )
    g.add_argument("--version", action="version", version=f"bida {__version__}")
    return p
