"""Simulate thick-slice (LR) acquisitions from isotropic (HR) volumes with the operator A.

The LR data are exactly ``A`` applied to the HR data, and the LR affine places slice ``k`` at
the world position where ``A`` centres it (one notion of slice position:
:class:`~bida_app.physics.geometry.SliceGeometry`). This is how the evaluation makes its
inputs (the paper: 500 µm and 1000 µm SLR slices from 200 µm data, along A-P).
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .. import __version__
from ..config import SIMULATION_TBW
from ..errors import BidaError, ExitCode
from .geometry import SliceGeometry, voxel_axis
from .operator import SliceOperator
from .profiles import PROFILE_KINDS

logger = logging.getLogger(__name__)

ISOTROPY_RTOL = 1e-3
"""Relative tolerance on voxel sizes for a volume to count as isotropic."""


def simulate_lr(
    hr_img: nib.Nifti1Image,
    *,
    thickness_mm: float,
    spacing_mm: float,
    axis: str,
    profile: str = "slr",
    tbw: float = SIMULATION_TBW,
    effective: bool = False,
    noise: float = 0.0,
    seed: int | Sequence[int] = 0,
    source: str | None = None,
) -> tuple[nib.Nifti1Image, dict[str, Any]]:
    """Thick-slice version of an HR volume along a world axis.

    ``n_lr = floor(extent / spacing)`` slices are placed centred on the HR extent along the
    voxel axis closest to ``axis``; each is the HR signal weighted by the slice profile
    (FWHM = ``thickness_mm``) integrated over the HR voxels.

    Parameters
    ----------
    hr_img : nibabel.Nifti1Image
        3D HR volume (any voxel order; isotropic in practice).
    thickness_mm : float
        Slice thickness (profile FWHM) in mm.
    spacing_mm : float
        Distance between slice centres in mm (``> thickness``: gap; ``<``: overlap).
    axis : {"LR", "AP", "SI"}
        World (RAS) through-plane axis.
    profile : {"slr", "gaussian", "boxcar"}
        Slice profile.
    tbw : float
        Time-bandwidth product of the SLR pulse.
    effective : bool
        Narrow the kernel to ``sqrt(T**2 - h**2)`` (see :mod:`bida_app.physics.profiles`).
    noise : float
        Rician noise on the slices: the standard deviation of each of the two Gaussian
        channels is ``noise`` times the HR volume's 99th percentile (0: noise-free).
    seed : int or sequence of int
        Seed of the noise (``numpy.random.default_rng``).
    source : str, optional
        Recorded in the sidecar's ``Sources``.

    Returns
    -------
    lr_img : nibabel.Nifti1Image
        float32 LR volume, same voxel order as the input.
    sidecar : dict
        Simulation parameters (BIDS-style keys).

    Raises
    ------
    BidaError
        Unknown axis or profile, or a spacing finer than the HR voxels (exit 64).
    BadDataError
        Not a 3D image (exit 65).

    Examples
    --------
    >>> hr = nib.Nifti1Image(np.ones((4, 10, 3), np.float32), np.diag([0.2, 0.2, 0.2, 1]))
    >>> lr, meta = simulate_lr(hr, thickness_mm=0.5, spacing_mm=0.5, axis="AP",
    ...                        profile="gaussian")
    >>> lr.shape, meta["NumberOfSlices"], float(lr.header.get_zooms()[1])
    ((4, 4, 3), 4, 0.5)
    """
    from ..errors import BadDataError

    if profile not in PROFILE_KINDS:
        raise BidaError(
            f"unknown slice profile {profile!r}; choose from {PROFILE_KINDS}", ExitCode.USAGE
        )
    if not (thickness_mm > 0 and spacing_mm > 0):
        raise BidaError("slice thickness and spacing must be positive", ExitCode.USAGE)
    if not (noise >= 0 and np.isfinite(noise)):
        raise BidaError(f"noise level must be >= 0, got {noise}", ExitCode.USAGE)
    if len(hr_img.shape) != 3:
        raise BadDataError(f"expected a 3D image, found shape {hr_img.shape}")
    affine = np.asarray(hr_img.affine, dtype=np.float64)
    try:
        ax = voxel_axis(affine, axis)
    except ValueError as exc:
        raise BidaError(str(exc), ExitCode.USAGE) from exc
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    hr_mm = float(zooms[ax])
    if spacing_mm < hr_mm * (1 - 1e-6):
        raise BidaError(
            f"slice spacing {spacing_mm} mm is finer than the HR voxel size {hr_mm:g} mm",
            ExitCode.USAGE,
        )
    if not np.allclose(zooms, zooms[0], rtol=ISOTROPY_RTOL):
        logger.warning("HR volume is not isotropic (voxel sizes %s mm)", np.round(zooms, 4))
    n_hr = hr_img.shape[ax]
    try:
        geom = SliceGeometry.from_hr(ax, n_hr, spacing_mm, thickness_mm, hr_mm)
    except ValueError as exc:
        raise BidaError(str(exc), ExitCode.USAGE) from exc
    lr_affine = geom.lr_affine(affine)
    try:
        op = SliceOperator.from_affines(
            affine,
            n_hr,
            lr_affine,
            geom.n_lr,
            ax,
            profile,
            thickness_mm=thickness_mm,
            effective=effective,
            tbw=tbw,
        )
    except ValueError as exc:
        raise BidaError(str(exc), ExitCode.USAGE) from exc
    data = np.asarray(hr_img.dataobj, dtype=np.float64)
    lr = op(data)
    sigma = noise * float(np.percentile(data, 99)) if noise > 0 else 0.0
    if sigma > 0:
        lr = rician(lr, sigma, np.random.default_rng(seed))
    lr_img = _lr_image(hr_img, lr.astype(np.float32), lr_affine, ax)
    sidecar = {
        "SliceThickness": float(thickness_mm),
        "SliceSpacing": float(spacing_mm),
        "SliceGap": float(spacing_mm - thickness_mm),
        "SliceProfile": profile,
        "TBW": float(tbw) if profile == "slr" else None,
        "EffectiveWidth": bool(effective),
        "ProfileFWHM": op.profile.fwhm_mm,
        "ThroughPlaneAxis": axis.upper(),
        "ThroughPlaneVoxelAxis": ax,
        "HRVoxelSize": hr_mm,
        "Factor": round(spacing_mm / hr_mm, 6),
        "NumberOfSlices": geom.n_lr,
        "NoiseLevel": float(noise),
        "RicianNoiseSigma": sigma,
        "SliceCentresHRIndex": [round(float(c), 9) for c in op.lr_centres],
        "Sources": [source] if source else [],
        "GeneratedBy": [{"Name": "bida simulate", "Version": __version__}],
    }
    return lr_img, sidecar


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``signal`` plus complex Gaussian noise of ``sigma`` per channel.

    Examples
    --------
    >>> x = rician(np.zeros(100_000), 1.0, np.random.default_rng(0))
    >>> bool(abs(x.mean() - np.sqrt(np.pi / 2)) < 0.01)  # Rayleigh where there is no signal
    True
    """
    real = signal + rng.normal(0.0, sigma, signal.shape)
    return np.hypot(real, rng.normal(0.0, sigma, signal.shape))


def _lr_image(
    hr_img: nib.Nifti1Image, data: np.ndarray, affine: np.ndarray, ax: int
) -> nib.Nifti1Image:
    """NIfTI image of the LR data; header from the HR image, sform/qform codes kept."""
    hdr = hr_img.header.copy() if isinstance(hr_img, nib.Nifti1Image) else None
    img = nib.Nifti1Image(data, affine, header=hdr)
    old = hr_img.header if isinstance(hr_img, nib.Nifti1Image) else None
    sform_code = int(old["sform_code"]) if old is not None else 0
    qform_code = int(old["qform_code"]) if old is not None else 0
    img.set_sform(affine, code=sform_code or 1)
    img.set_qform(affine, code=qform_code)
    img.set_data_dtype(np.float32)
    img.header.set_slope_inter(None, None)
    img.header["cal_min"] = img.header["cal_max"] = 0
    img.header.set_dim_info(slice=ax)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = b"bida simulate"
    return img


def simulate_file(
    in_path: str | os.PathLike[str], out_path: str | os.PathLike[str], **kwargs: Any
) -> tuple[Path, Path]:
    """Simulate LR from one NIfTI file; write the image and its JSON sidecar atomically.

    Parameters
    ----------
    in_path : path
        HR NIfTI file.
    out_path : path
        LR NIfTI file to write (``.nii`` or ``.nii.gz``); the sidecar goes beside it.
    **kwargs
        Passed to :func:`simulate_lr`.

    Returns
    -------
    tuple of Path
        The written NIfTI and JSON paths.
    """
    from ..utils.io import write_json, write_nifti
    from ..utils.nifti import load_volume

    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise BidaError(f"{in_path}: no such file", ExitCode.MISSING_INPUT)
    if not out_path.name.endswith((".nii", ".nii.gz")):
        raise BidaError(f"{out_path}: output must end in .nii or .nii.gz", ExitCode.USAGE)
    if out_path.resolve() == in_path.resolve():
        raise BidaError(f"{out_path}: refusing to overwrite the input", ExitCode.USAGE)
    lr_img, sidecar = simulate_lr(load_volume(in_path), source=str(in_path), **kwargs)
    json_path = out_path.with_name(out_path.name.split(".")[0] + ".json")
    write_nifti(lr_img, out_path)
    write_json(json_path, sidecar)
    logger.info("wrote %s (%s)", out_path, "x".join(map(str, lr_img.shape)))
    return out_path, json_path


def simulate_bids(
    bids_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    participant_label: list[str] | None = None,
    **kwargs: Any,
) -> list[Path]:
    """Simulate LR for every isotropic T2w run of a BIDS dataset.

    The output is a BIDS tree with the same relative file names as the input (so LR and HR
    runs pair up by path), each sidecar being the source sidecar updated with the simulation
    parameters, plus a ``dataset_description.json``. Non-isotropic runs are skipped with a log
    message. The input directory is never written to.

    Parameters
    ----------
    bids_dir : path
        Input BIDS dataset.
    out_dir : path
        Output directory (must not be inside ``bids_dir``).
    participant_label : list of str, optional
        Subjects to process (without ``sub-``); all by default.
    **kwargs
        Passed to :func:`simulate_lr`; an integer ``seed`` is combined with each run's path,
        so that runs get independent noise.

    Returns
    -------
    list of Path
        The LR NIfTI files written.
    """
    from tqdm import tqdm

    from ..utils.io import write_json, write_nifti
    from ..utils.nifti import load_volume

    bids_dir, out_dir = Path(bids_dir).resolve(), Path(out_dir).resolve()
    if not bids_dir.is_dir():
        raise BidaError(f"{bids_dir}: no such directory", ExitCode.MISSING_INPUT)
    if out_dir == bids_dir or bids_dir in out_dir.parents:
        raise BidaError(
            f"{out_dir}: output must not be inside the input dataset {bids_dir}", ExitCode.USAGE
        )
    runs = _isotropic_t2w(bids_dir, participant_label)
    written: list[Path] = []
    try:
        for path, metadata in tqdm(runs, desc="simulate", unit="run", disable=len(runs) < 2):
            rel = path.relative_to(bids_dir).as_posix()
            seed = [int(kwargs.get("seed", 0)), zlib.crc32(rel.encode())]
            lr_img, sidecar = simulate_lr(
                load_volume(path), source=f"bids:raw:{rel}", **(kwargs | {"seed": seed})
            )
            target = out_dir / rel
            write_nifti(lr_img, target)
            write_json(target.with_name(target.name.split(".")[0] + ".json"), metadata | sidecar)
            written.append(target)
            logger.info("wrote %s", target)
    finally:
        if written:
            _write_description(bids_dir, out_dir, kwargs)
    return written


def _isotropic_t2w(bids_dir: Path, participant_label: list[str] | None) -> list[tuple[Path, dict]]:
    """Isotropic T2w NIfTI runs of the dataset and their sidecar metadata."""
    from ..bids.discovery import isotropic_t2w_runs

    return isotropic_t2w_runs(bids_dir, participant_label, ISOTROPY_RTOL)


def _write_description(bids_dir: Path, out_dir: Path, params: dict) -> None:
    from ..utils.io import write_json

    uri = bids_dir.as_uri()
    args = ", ".join(f"{k}={v}" for k, v in sorted(params.items()))
    write_json(
        out_dir / "dataset_description.json",
        {
            "Name": f"Thick-slice simulation of {bids_dir.name}",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "GeneratedBy": [
                {"Name": "bida simulate", "Version": __version__, "Description": args}
            ],
            "SourceDatasets": [{"URL": uri}],
            "DatasetLinks": {"raw": uri},
        },
    )
