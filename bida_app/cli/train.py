"""``bida train INPUT... --plane PLANE --out DIR``: train a plane prior for BiDA.

The output folder is a weights folder: pass it to the participant run as ``--weights DIR``
(train each plane BiDA needs into the same folder). Multi-GPU: ``torchrun
--nproc_per_node=N $(which bida) train ...`` (DistributedDataParallel; untested here).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import BidaError
from .options import add_device_option, command_parser, positive_int

LOGGER = logging.getLogger("bida")


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _grid(text: str) -> tuple[int, int, int]:
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected XxYxZ, e.g. 144x144x64, got {text}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``bida train`` (usage errors exit 64)."""
    from ..models.config import PRESETS

    p = command_parser(
        "bida train",
        "Train a 2D diffusion prior (flow prediction) for one slice plane on "
        "isotropic T2w volumes, with the workflow's preprocessing. The output folder works "
        "as --weights DIR of the participant run.",
        "examples:\n"
        "  bida train iso_bids/ --plane axial --out my_weights --steps 20000\n"
        "  bida train iso_bids/ --plane sagittal --out my_weights --steps 20000\n"
        "  bida bids/ out/ participant --method bida --weights my_weights",
    )
    p.add_argument(
        "inputs",
        metavar="INPUT",
        nargs="+",
        type=Path,
        help="BIDS dataset(s) (every isotropic T2w run) and/or NIfTI files; thick-slice files "
        "contribute their in-plane slices",
    )
    p.add_argument("--plane", required=True, choices=["axial", "coronal", "sagittal"])
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="weights folder")
    p.add_argument("--steps", type=positive_int, default=20000, help="total optimizer steps")
    p.add_argument("--resume", action="store_true", help="continue from DIR's checkpoint")
    p.add_argument(
        "--overwrite", action="store_true", help="start over even if DIR has a checkpoint"
    )
    p.add_argument(
        "--stop-after",
        "--stop_after",
        type=positive_int,
        default=None,
        metavar="N",
        help="leave after N steps of this run (checkpoint written; continue with --resume)",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--batch-size", "--batch_size", type=positive_int, default=16)
    p.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate")
    p.add_argument("--weight-decay", "--weight_decay", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=500, help="linear warm-up steps")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights")
    p.add_argument("--grad-clip", "--grad_clip", type=float, default=1.0)
    p.add_argument("--val-fraction", "--val_fraction", type=_fraction, default=0.1)
    p.add_argument("--val-every", "--val_every", type=int, default=500)
    p.add_argument("--sample-every", "--sample_every", type=int, default=2000)
    p.add_argument(
        "--grid-samples",
        "--grid_samples",
        type=int,
        default=8,
        help="prior samples per PNG grid (0: no sample grids)",
    )
    p.add_argument("--checkpoint-every", "--checkpoint_every", type=int, default=1000)
    p.add_argument(
        "--patch",
        type=positive_int,
        default=None,
        help="train on square crops of this size around the foreground (faster on CPU)",
    )
    p.add_argument("--max-rotation", type=float, default=10.0, help="degrees")
    p.add_argument("--max-shift", type=float, default=5.0, help="pixels")
    p.add_argument(
        "--cross-plane",
        "--cross_plane",
        action="store_true",
        help="also train on the other planes' slices (shared axis kept, the other rotated in)",
    )
    p.add_argument("--grid", type=_grid, default=(144, 144, 64), help="model grid XxYxZ (RAS)")
    p.add_argument("--voxel-size", "--voxel_size", type=float, default=0.2, metavar="MM")
    p.add_argument(
        "--no-n4",
        "--no_n4",
        dest="n4",
        action="store_false",
        # "%(default).0s" keeps the formatter from printing the confusing "(default: True)"
        help="skip N4 bias-field correction (N4 runs by default)%(default).0s",
    )
    p.add_argument("--seed", type=int, default=0)
    add_device_option(p, "auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.add_argument(
        "--weights-dtype", "--weights_dtype", choices=["float32", "bfloat16"], default="float32"
    )
    p.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        metavar="LABEL",
        help="BIDS inputs: subjects to train on",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``bida train``; return the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (64)
        return int(exc.code or 0)
    from ..device import set_threads
    from ..training import PrepConfig, TrainConfig, train

    try:
        if args.threads > 0:
            set_threads(args.threads)
        cfg = TrainConfig(
            plane=args.plane,
            steps=args.steps,
            preset=args.preset,
            batch_size=args.batch_size,
            lr=args.lr,
            weight_decay=args.weight_decay,
            warmup=min(args.warmup, args.steps // 10) if args.warmup else 0,
            schedule=args.schedule,
            ema_decay=args.ema,
            grad_clip=args.grad_clip,
            val_fraction=args.val_fraction,
            val_every=args.val_every,
            sample_every=args.sample_every,
            n_grid=args.grid_samples,
            checkpoint_every=args.checkpoint_every,
            patch=args.patch,
            max_degrees=args.max_rotation,
            max_shift=args.max_shift,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
            weights_dtype=args.weights_dtype,
            prep=PrepConfig(
                voxel_mm=args.voxel_size,
                grid=args.grid,
                n4=args.n4,
                cross_plane=args.cross_plane,
            ),
        )
        res = train(
            args.inputs,
            cfg,
            args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            stop_after=args.stop_after,
            participant_label=args.participant_label,
            progress=args.progress,
        )
    except BidaError as exc:
        sys.stderr.write(f"bida train: error: {exc}\n")
        return int(exc.code)
    except ValueError as exc:
        sys.stderr.write(f"bida train: error: {exc}\n")
        return 64
    LOGGER.info(
        "%s prior at step %d written to %s (use --weights %s)",
        args.plane,
        res.step,
        res.weights,
        Path(args.out),
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    from .main import setup_logging

    setup_logging(0)
    sys.exit(main())
