"""Loading anatomical NIfTI files with clear, one-line errors for bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import BadDataError

LOGGER = logging.getLogger(__name__)

#: In-plane voxel sizes above this (mm) are implausible for rodent MRI (×10 headers).
RODENT_MAX_INPLANE_MM = 1.0


def load_volume(path: str | Path, *, header_scale: float = 1.0) -> nib.Nifti1Image:
    """Load a 3D NIfTI image, fully reading its data to catch truncation.

    Parameters
    ----------
    path : path
        NIfTI file (``.nii`` or ``.nii.gz``).
    header_scale : float
        Multiply the voxel-to-world affine by this factor (e.g. ``0.1`` for rodent data
        stored with ×10 "human-sized" voxels). The data are untouched.

    Returns
    -------
    nibabel.Nifti1Image
        A float32 image whose non-finite voxels were set to 0 (with a warning).

    Raises
    ------
    BadDataError
        Unreadable, truncated, non-3D or empty file (exit code 65).
    """
    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for corrupt files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadDataError(f"{path}: cannot read NIfTI data ({reason})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BadDataError(f"{path}: expected a 3D image, found shape {data.shape}")
    if min(data.shape) < 2:
        raise BadDataError(f"{path}: image has a dimension of size < 2 ({data.shape})")
    bad = ~np.isfinite(data)
    if bad.any():
        LOGGER.warning(
            "%s: %d non-finite voxels (NaN/Inf) set to 0 and masked", path.name, int(bad.sum())
        )
        data[bad] = 0.0
    affine = img.affine.copy()
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise BadDataError(f"{path}: invalid (singular or non-finite) voxel-to-world affine")
    if header_scale != 1.0:
        affine[:3, :] *= header_scale
        LOGGER.info(
            "%s: voxel-to-world affine scaled by %g (--header_scale)", path.name, header_scale
        )
    out = nib.Nifti1Image(data, affine, header=img.header)
    out.set_data_dtype(np.float32)
    out.header.set_xyzt_units("mm")
    return out


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) from the affine's column norms."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
