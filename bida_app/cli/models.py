"""``bida models list|info|verify|fetch-skullstrip``: the installed plane priors.

``list`` shows each plane found in the weights folder (the shipped one, or ``--weights DIR``)
with file size, preset, parameters, voxel size, slice shape, SHA-256 and whether the file
matches its recorded checksum; ``info PLANE`` prints a plane's card; ``verify`` checks every
plane (or those named) and exits 65 on a checksum mismatch or unreadable card, 66 when a
model is missing. ``fetch-skullstrip`` downloads the skull-strip networks of the evaluation.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ..errors import BidaError, ExitCode
from .options import BidaArgumentParser, command_parser

LOGGER = logging.getLogger("bida")


def _weights_root(weights: Path | None) -> Path:
    """The folder to list or verify; unlike a run, a missing folder is itself the error."""
    from ..models.weights import resolve_weights_dir

    root = resolve_weights_dir(weights)
    if not root.is_dir():
        raise BidaError(f"weights folder {root} does not exist", ExitCode.MISSING_INPUT)
    return root


def plane_status(root: Path, plane: str) -> dict[str, Any]:
    """One row of ``bida models list``: card facts and verification status of ``plane``."""
    from ..models.weights import verify_plane_model

    row: dict[str, Any] = {"plane": plane, "status": "ok"}
    try:
        card = verify_plane_model(root, plane)
    except BidaError as err:
        row["status"] = "missing" if err.code == ExitCode.MISSING_INPUT else "checksum mismatch"
        if err.code == ExitCode.BAD_DATA and "unreadable" in str(err):
            row["status"] = "unreadable card"
        row["error"] = str(err)
        row["code"] = int(err.code)
        try:
            card = json.loads((root / f"{plane}.json").read_text())
        except (OSError, ValueError):
            return row
    weights = root / card.get("weights", {}).get("file", f"{plane}.safetensors")
    try:
        from ..models.config import UNetConfig, preset_name

        preset = preset_name(UNetConfig.from_dict(card["unet"]))
    except (KeyError, ValueError, TypeError):
        preset = "?"
    row.update(
        file=str(weights),
        size_mb=round(weights.stat().st_size / 2**20, 2) if weights.is_file() else None,
        preset=preset,
        n_params=card.get("n_params"),
        voxel_size_mm=card.get("voxel_size_mm"),
        slice_shape=card.get("slice_shape"),
        dtype=card.get("weights", {}).get("dtype"),
        steps=card.get("training", {}).get("steps"),
        sha256=card.get("weights", {}).get("sha256"),
    )
    return row


def _planes_present(root: Path) -> list[str]:
    from ..models.weights import PLANES

    return [p for p in PLANES if (root / f"{p}.json").is_file()]


def cmd_list(args: argparse.Namespace) -> int:
    """Print a table (or JSON) of the installed planes."""
    root = _weights_root(args.weights)
    rows = [plane_status(root, p) for p in _planes_present(root)]
    if args.json:
        sys.stdout.write(json.dumps({"weights_dir": str(root), "models": rows}, indent=2) + "\n")
        return 0
    lines = [f"weights: {root}"]
    if not rows:
        lines.append("  (no plane models)")
    header = (
        f"  {'plane':<9} {'size':>8} {'preset':<8} {'params':>9} {'voxel':>6} "
        f"{'slice':<9} {'steps':>6} {'sha256':<17} status"
    )
    if rows:
        lines.append(header)
    for r in rows:
        size = f"{r['size_mb']:.2f}MB" if r.get("size_mb") is not None else "-"
        shape = "x".join(str(n) for n in r.get("slice_shape") or []) or "-"
        sha = (r.get("sha256") or "-")[:16]
        lines.append(
            f"  {r['plane']:<9} {size:>8} {r.get('preset', '-'):<8} "
            f"{r.get('n_params') or '-':>9} {r.get('voxel_size_mm') or '-':>6} {shape:<9} "
            f"{r.get('steps') if r.get('steps') is not None else '-':>6} {sha:<17} {r['status']}"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print one plane's card (JSON) with its verification status."""
    from ..models.weights import read_card

    root = _weights_root(args.weights)
    card = read_card(root, args.plane)
    status = plane_status(root, args.plane)
    card["verification"] = {k: status[k] for k in ("status", "error") if k in status}
    sys.stdout.write(json.dumps(card, indent=2) + "\n")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify checksums; exit 65 on a mismatch, 66 when a model is missing."""
    from ..models.weights import PLANES

    bad = [p for p in args.planes if p not in PLANES]
    if bad:
        raise BidaError(f"unknown plane(s) {bad}; choose from {list(PLANES)}", ExitCode.USAGE)
    root = _weights_root(args.weights)
    planes = args.planes or _planes_present(root)
    if not planes:
        raise BidaError(f"no plane models in {root}", ExitCode.MISSING_INPUT)
    codes = []
    for plane in planes:
        row = plane_status(root, plane)
        if row["status"] == "ok":
            sys.stdout.write(f"{plane}: ok ({row['sha256']})\n")
        else:
            sys.stderr.write(f"bida models verify: {plane}: {row['error']}\n")
            codes.append(row["code"])
    if not codes:
        return 0
    return int(ExitCode.BAD_DATA) if ExitCode.BAD_DATA in codes else int(codes[0])


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``bida models`` (usage errors exit 64)."""
    p = command_parser(
        "bida models",
        "Show and check the installed BiDA plane priors.",
        "examples:\n  bida models list\n  bida models info coronal\n"
        "  bida models verify --weights my_priors",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=BidaArgumentParser)

    def weights_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--weights",
            type=Path,
            default=None,
            metavar="DIR",
            help="weights folder (default: the weights shipped with bida)",
        )

    sp = sub.add_parser("list", help="installed planes, sizes, checksums, status")
    weights_opt(sp)
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp = sub.add_parser("info", help="print a plane's model card")
    sp.add_argument("plane", choices=["axial", "coronal", "sagittal"])
    weights_opt(sp)
    sp = sub.add_parser("verify", help="check SHA-256 checksums (exit 65 mismatch, 66 missing)")
    sp.add_argument("planes", nargs="*", metavar="PLANE", help="planes to check (default: all)")
    weights_opt(sp)
    sub.add_parser(
        "fetch-skullstrip",
        help="download the rodent skull-strip networks for the evaluation",
        add_help=False,
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``bida models``; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "fetch-skullstrip":
        from ..evaluation.fetch import main as fetch_main

        return int(fetch_main(argv[1:]) or 0)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    handlers = {"list": cmd_list, "info": cmd_info, "verify": cmd_verify}
    try:
        return handlers[args.command](args)
    except BidaError as exc:
        sys.stderr.write(f"bida models: error: {exc}\n")
        return int(exc.code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
