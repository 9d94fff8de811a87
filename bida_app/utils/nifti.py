"""Loading anatomical NIfTI files with clear, one-line errors for bad input."""

from __future__ import annotations

import io
import logging
import math
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import BadDataError, BidaError, ExitCode

LOGGER = logging.getLogger(__name__)

#: In-plane voxel sizes from this (mm) up are implausible for rodent MRI (×10 headers).
RODENT_MAX_INPLANE_MM = 1.0
#: Deflate cannot compress better than about 1032:1; a .nii.gz declaring more is truncated.
MAX_GZIP_RATIO = 1100
#: Tolerances of the header checks: axis angle cosine (shear) and qform/sform distance (mm).
SHEAR_COS_TOL = 1e-3
QFORM_SFORM_TOL_MM = 1e-3


def check_header(path: str | Path, *, header_scale: float = 1.0) -> tuple[nib.Nifti1Image, list]:
    """Open a NIfTI file and check its header without reading the voxel data.

    Parameters
    ----------
    path : path
        ``.nii`` or ``.nii.gz`` file.
    header_scale : float
        Factor applied to the voxel sizes (``--header_scale``), for the checks.

    Returns
    -------
    img : nibabel.Nifti1Image
        The image, its data not loaded.
    warnings : list of str
        Problems worth a warning (not fatal): sheared axes, qform/sform disagreement.

    Raises
    ------
    BidaError
        One line naming the file: 66 when it is missing or unreadable, 65 when it is empty,
        not NIfTI, not 3D, has a zero/negative/non-finite voxel size, a singular affine, or
        declared dimensions that do not fit the file size.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except FileNotFoundError as exc:
        reason = (
            "broken symbolic link (DataLad/git-annex content not fetched? try 'datalad get')"
            if path.is_symlink()
            else "file not found"
        )
        raise BidaError(f"{path}: {reason}", ExitCode.MISSING_INPUT) from exc
    except IsADirectoryError as exc:
        raise BadDataError(f"{path}: is a directory, not a NIfTI file") from exc
    except OSError as exc:
        raise BidaError(
            f"{path}: cannot read ({exc.strerror or exc})", ExitCode.MISSING_INPUT
        ) from exc
    if size == 0:
        raise BadDataError(f"{path}: empty file (0 bytes)")
    try:
        header = _raw_header(path)
        shape = tuple(int(s) for s in header.get_data_shape())
        pixdim = np.asarray(header["pixdim"][1:4], dtype=float)
        offset = int(header.get_data_offset())
        itemsize = np.dtype(header.get_data_dtype()).itemsize
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise BadDataError(f"{path}: cannot read NIfTI header ({_first_line(exc)})") from exc
    if not (len(shape) == 3 or len(shape) == 4 and shape[3] == 1):
        raise BadDataError(f"{path}: expected a 3D image, found shape {shape}")
    if min(shape[:3]) < 2:
        raise BadDataError(f"{path}: image has a dimension of size < 2 ({shape})")
    _check_size(path, size, offset + math.prod(shape) * itemsize, shape)
    for kind, bad in (
        ("non-finite", ~np.isfinite(pixdim)),
        ("zero", pixdim == 0),
        ("negative", pixdim < 0),
    ):
        if bad.any():
            raise BadDataError(f"{path}: {kind} voxel size in the header (pixdim {_fmt(pixdim)})")
    try:
        img = nib.load(str(path))
        affine = img.affine
    except Exception as exc:
        raise BadDataError(f"{path}: cannot read NIfTI header ({_first_line(exc)})") from exc
    if not np.all(np.isfinite(affine)):
        raise BadDataError(f"{path}: non-finite values in the voxel-to-world affine")
    zooms = voxel_sizes(affine) * header_scale
    if zooms.min() < 1e-6 or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise BadDataError(
            f"{path}: singular voxel-to-world affine (voxel sizes {_fmt(zooms)} mm)"
        )
    return img, _geometry_warnings(img, zooms)


def _raw_header(path: Path) -> nib.Nifti1Header:
    """The NIfTI-1/2 header as stored: without the fixes nibabel applies when loading.

    (nibabel turns a zero voxel size into 1 mm with a warning; bida refuses it instead.)
    """
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fh:
        head = fh.read(540)
    if len(head) < 348:
        raise ValueError(f"header is {len(head)} bytes, shorter than a NIfTI header")
    sizes = {int.from_bytes(head[:4], order) for order in ("little", "big")}
    cls = nib.Nifti2Header if 540 in sizes else nib.Nifti1Header
    if not sizes & {348, 540}:
        raise ValueError("not a NIfTI file (bad sizeof_hdr)")
    header = cls.from_fileobj(io.BytesIO(head), check=False)
    if header["magic"].item() not in (b"n+1", b"ni1", b"n+2", b"ni2"):
        raise ValueError(f"not a NIfTI file (magic {header['magic'].item()!r})")
    if header["magic"].item() in (b"ni1", b"ni2"):
        raise ValueError("a two-file (.hdr/.img) NIfTI pair is not supported")
    return header


def _check_size(path: Path, size: int, expected: int, shape: tuple) -> None:
    """Refuse a header whose dimensions cannot fit the file, before anything is allocated."""
    problem = (
        f"{path}: declared dimensions {'x'.join(map(str, shape))} do not match the file size "
        f"({size} bytes; truncated or wrong header)"
    )
    if path.name.endswith(".gz"):
        if expected > MAX_GZIP_RATIO * size + 4096:
            raise BadDataError(problem)
        if expected < 2**32:
            with open(path, "rb") as fh:
                fh.seek(-4, os.SEEK_END)
                isize = int.from_bytes(fh.read(4), "little")
            if isize < expected:  # gzip's trailer: the uncompressed size (mod 2**32)
                raise BadDataError(problem)
    elif size < expected:
        raise BadDataError(problem)


def _geometry_warnings(img: nib.Nifti1Image, zooms: np.ndarray) -> list[str]:
    """Sheared voxel axes and qform/sform disagreement (both survivable, both suspicious)."""
    warnings = []
    axes = img.affine[:3, :3] / voxel_sizes(img.affine)
    cosines = np.abs(axes.T @ axes - np.eye(3))
    if cosines.max() > SHEAR_COS_TOL:
        angle = 90.0 - math.degrees(math.acos(min(1.0, float(cosines.max()))))
        warnings.append(
            f"voxel axes are not orthogonal (sheared affine, {angle:.2g} deg off); "
            "bida treats them as orthogonal"
        )
    header = img.header
    if int(header["qform_code"]) > 0 and int(header["sform_code"]) > 0:
        try:
            diff = np.abs(header.get_qform() - header.get_sform())
        except ValueError as exc:  # e.g. a quaternion of norm > 1
            warnings.append(f"invalid qform ignored ({_first_line(exc)}); using the sform")
            return warnings
        distance = float(diff[:3, :3].max() * max(img.shape[:3]) + diff[:3, 3].max())
        if distance > QFORM_SFORM_TOL_MM * max(1.0, float(zooms.max())):
            warnings.append(
                f"qform and sform disagree (up to {distance:.3g} mm across the image); "
                "using the sform, as nibabel does"
            )
    return warnings


def _fmt(values: np.ndarray) -> str:
    return "x".join(f"{v:g}" for v in np.asarray(values, dtype=float))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    BidaError
        Unreadable, truncated, non-3D or empty file (see :func:`check_header`; exit 65/66),
        or a constant image or one without any positive intensity (exit 65).
    """
    path = Path(path)
    img, _ = check_header(path, header_scale=header_scale)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise BadDataError(f"{path}: cannot read NIfTI data ({_first_line(exc)})") from exc
    if data.ndim == 4:  # (x, y, z, 1): check_header refused anything else
        data = data[..., 0]
    bad = ~np.isfinite(data)
    finite = data[~bad]
    if not (finite > 0).any():
        raise BadDataError(f"{path}: no positive intensities (blank or sign-inverted image)")
    if finite.min() == finite.max():
        raise BadDataError(f"{path}: constant image (every voxel is {finite.max():g})")
    if bad.any():
        LOGGER.warning(
            "%s: %d non-finite voxels (NaN/Inf) set to 0 and masked", path.name, int(bad.sum())
        )
        data[bad] = 0.0
    affine = img.affine.copy()
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
