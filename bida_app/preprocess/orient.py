"""Header validation and exact reorientation to RAS voxel order (and back).

bida works on volumes in RAS voxel order (axis 0 = L→R, 1 = P→A, 2 = I→S). Reorientation
only permutes and flips voxel axes (nibabel's ``io_orientation`` / ``apply_orientation`` /
``inv_ornt_aff``); it never interpolates, so :func:`from_ras` restores the input's voxels
bit for bit. Everything needed to go back is kept in :class:`OrientationInfo`, which is
JSON-serialisable for sidecars and Nipype caches.

Header hygiene follows the field's practice (niworkflows ``ValidateImage``): a non-finite or
singular affine is refused with :class:`~bida_app.errors.BadDataError` naming the file; when
qform and sform are both set and disagree, the sform is used and a warning is logged; a
header with neither is used with nibabel's fallback affine and a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.orientations import (
    aff2axcodes,
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

from ..errors import BadDataError

LOGGER = logging.getLogger(__name__)

#: Largest qform/sform difference (mm, or unitless for rotations) taken as agreement.
QFORM_SFORM_ATOL = 1e-4
#: An in-plane voxel this large (mm) in a rodent scan usually means a ×10 "human-sized" header.
HUMAN_SIZED_MM = 0.5
_RAS = axcodes2ornt(("R", "A", "S"))


def _name(img: nib.spatialimages.SpatialImage, name: str | None) -> str:
    return name or img.get_filename() or "<in-memory image>"


def voxel_sizes(img: nib.spatialimages.SpatialImage | np.ndarray) -> np.ndarray:
    """Voxel spacing in mm along each voxel axis, from the affine (not the pixdim fields).

    Parameters
    ----------
    img : SpatialImage or ndarray
        An image, or a 4×4 affine.

    Returns
    -------
    ndarray, shape (3,)
        Column norms of the affine's 3×3 part (float64).

    Examples
    --------
    >>> voxel_sizes(np.diag([0.1, 1.0, 0.1, 1.0]))
    array([0.1, 1. , 0.1])
    """
    aff = np.asarray(img if isinstance(img, np.ndarray) else img.affine, dtype=np.float64)
    return np.sqrt((aff[:3, :3] ** 2).sum(axis=0))


def through_plane_axis(
    img: nib.spatialimages.SpatialImage | np.ndarray, rtol: float = 0.05
) -> int:
    """Voxel axis with the largest spacing (the slice-select direction of a thick-slice scan).

    Parameters
    ----------
    img : SpatialImage or ndarray
        An image, or a 4×4 affine.
    rtol : float
        The largest spacing must exceed the second largest by this fraction.

    Returns
    -------
    int
        0, 1 or 2.

    Raises
    ------
    ValueError
        If no spacing stands out (a near-isotropic volume has no through-plane axis).

    Examples
    --------
    >>> through_plane_axis(np.diag([0.11, 1.0, 0.11, 1.0]))
    1
    """
    zooms = voxel_sizes(img)
    order = np.argsort(zooms)
    if zooms[order[-1]] <= zooms[order[-2]] * (1.0 + rtol):
        raise ValueError(
            f"voxel sizes {np.round(zooms, 4).tolist()} mm have no clearly largest spacing; "
            "a through-plane axis is only defined for anisotropic (thick-slice) volumes"
        )
    return int(order[-1])


def validate_header(img: nib.Nifti1Image, name: str | None = None) -> nib.Nifti1Image:
    """Check the header and return an image whose qform and sform agree.

    Parameters
    ----------
    img : Nifti1Image
        Input image; trailing singleton dimensions beyond 3 are dropped.
    name : str, optional
        Name used in messages (defaults to the image's file name).

    Returns
    -------
    Nifti1Image
        Same voxels; sform and qform both set to the chosen affine (sform when set, else
        qform, else nibabel's fallback).

    Raises
    ------
    BadDataError
        Non-3D data, or a non-finite or singular affine.
    """
    label = _name(img, name)
    shape = img.shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise BadDataError(f"{label}: expected a 3D volume, got shape {img.shape}")
    hdr = img.header
    s_code, q_code = int(hdr["sform_code"]), int(hdr["qform_code"])
    candidates = {}
    if s_code > 0:
        candidates["sform"] = hdr.get_sform()
    if q_code > 0:
        candidates["qform"] = hdr.get_qform()
    for form, aff in candidates.items():
        if not np.all(np.isfinite(aff)):
            raise BadDataError(f"{label}: the {form} contains non-finite values:\n{aff}")
    affine = hdr.get_best_affine() if img.affine is None else img.affine
    affine = np.asarray(affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise BadDataError(f"{label}: the affine contains non-finite values:\n{affine}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise BadDataError(f"{label}: the affine is singular (zero voxel size?):\n{affine}")
    if len(candidates) == 2:
        diff = float(np.abs(candidates["sform"] - candidates["qform"]).max())
        if diff > QFORM_SFORM_ATOL:
            LOGGER.warning(
                "%s: qform and sform disagree (max |difference| %.4g); using the sform",
                label,
                diff,
            )
    elif not candidates:
        LOGGER.warning(
            "%s: neither sform nor qform is set; using voxel sizes only (orientation unknown)",
            label,
        )
        s_code = 2
    zooms = voxel_sizes(affine)
    if zooms.min() >= HUMAN_SIZED_MM:
        LOGGER.warning(
            "%s: voxel sizes %s mm look human-sized for a rodent scan; check the header",
            label,
            np.round(zooms, 4).tolist(),
        )
    data = np.asanyarray(img.dataobj).reshape(shape)
    return _make_image(data, affine, img.header, s_code, q_code)


def _make_image(
    data: np.ndarray,
    affine: np.ndarray,
    header: nib.Nifti1Header,
    s_code: int,
    q_code: int,
    ornt: np.ndarray | None = None,
) -> nib.Nifti1Image:
    """New image with ``header``'s metadata, ``affine`` in both forms and the given codes.

    ``ornt`` (a nibabel orientation applied to the voxels) moves the header's
    frequency/phase/slice dimension info along with the axes.
    """
    out = nib.Nifti1Image(data, affine, header=header)
    out.header.set_data_dtype(data.dtype)
    out.header.set_sform(affine, code=s_code)
    out.header.set_qform(affine, code=q_code)
    if ornt is not None:
        dims = header.get_dim_info()
        out.header.set_dim_info(*(None if d is None else int(ornt[d, 0]) for d in dims))
    return out


@dataclass(frozen=True, eq=False)
class OrientationInfo:
    """What :func:`from_ras` needs to return an image to the input's voxel order and space.

    Attributes
    ----------
    source : str
        File name (or label) of the input.
    input_codes : str
        Axis codes of the input voxel order, e.g. ``"SAR"``.
    input_shape : tuple of int
        Full shape of the input (including dropped trailing singleton dimensions).
    input_affine : ndarray, shape (4, 4)
        The validated input affine.
    ras_shape : tuple of int
        Spatial shape after reorientation.
    ras_affine : ndarray, shape (4, 4)
        Affine of the RAS image.
    ornt : ndarray, shape (3, 2)
        nibabel orientation of the input voxel axes (``io_orientation``).
    sform_code, qform_code : int
        Header codes written to the outputs.
    """

    source: str
    input_codes: str
    input_shape: tuple[int, ...]
    input_affine: np.ndarray
    ras_shape: tuple[int, ...]
    ras_affine: np.ndarray
    ornt: np.ndarray
    sform_code: int
    qform_code: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary (floats round-trip exactly through ``json``)."""
        return {
            "source": self.source,
            "input_codes": self.input_codes,
            "input_shape": list(self.input_shape),
            "input_affine": self.input_affine.tolist(),
            "ras_shape": list(self.ras_shape),
            "ras_affine": self.ras_affine.tolist(),
            "ornt": self.ornt.tolist(),
            "sform_code": self.sform_code,
            "qform_code": self.qform_code,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OrientationInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(
            source=str(d["source"]),
            input_codes=str(d["input_codes"]),
            input_shape=tuple(int(v) for v in d["input_shape"]),
            input_affine=np.asarray(d["input_affine"], dtype=np.float64),
            ras_shape=tuple(int(v) for v in d["ras_shape"]),
            ras_affine=np.asarray(d["ras_affine"], dtype=np.float64),
            ornt=np.asarray(d["ornt"], dtype=np.float64),
            sform_code=int(d["sform_code"]),
            qform_code=int(d["qform_code"]),
        )


def to_ras(
    img: nib.Nifti1Image, name: str | None = None
) -> tuple[nib.Nifti1Image, OrientationInfo]:
    """Validate the header and reorder/flip voxel axes so that they run R, A, S.

    Parameters
    ----------
    img : Nifti1Image
        Input image (any voxel order).
    name : str, optional
        Name used in messages and recorded in the info (defaults to the file name).

    Returns
    -------
    ras_img : Nifti1Image
        Same voxels in RAS order, with the matching affine (same world positions).
    info : OrientationInfo
        What :func:`from_ras` needs.

    Examples
    --------
    >>> img = nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    ...                       np.array([[0, 0, 0.2, 0], [0, -0.2, 0, 0], [0.2, 0, 0, 0],
    ...                                 [0, 0, 0, 1]]))
    >>> ras, info = to_ras(img)
    >>> info.input_codes, "".join(nib.aff2axcodes(ras.affine)), ras.shape
    ('SPR', 'RAS', (4, 3, 2))
    >>> back = from_ras(ras, info)
    >>> bool(np.array_equal(back.get_fdata(), img.get_fdata()))
    True
    >>> bool(np.array_equal(back.affine, img.affine))
    True
    """
    label = _name(img, name)
    valid = validate_header(img, label)
    affine = valid.affine.astype(np.float64)
    ornt = io_orientation(affine)
    codes = "".join(aff2axcodes(affine))
    data = apply_orientation(np.asanyarray(valid.dataobj), ornt)
    ras_affine = affine @ inv_ornt_aff(ornt, valid.shape)
    hdr = valid.header
    s_code, q_code = int(hdr["sform_code"]), int(hdr["qform_code"])
    ras_img = _make_image(data, ras_affine, hdr, s_code, q_code, ornt)
    LOGGER.info(
        "%s: voxel order %s -> RAS; voxel sizes %s mm; shape %s -> %s",
        label,
        codes,
        np.round(voxel_sizes(affine), 5).tolist(),
        tuple(valid.shape),
        tuple(data.shape),
    )
    info = OrientationInfo(
        source=label,
        input_codes=codes,
        input_shape=tuple(int(v) for v in img.shape),
        input_affine=affine,
        ras_shape=tuple(int(v) for v in data.shape),
        ras_affine=ras_affine,
        ornt=ornt,
        sform_code=s_code,
        qform_code=q_code,
    )
    return ras_img, info


def from_ras(img: nib.Nifti1Image, info: OrientationInfo) -> nib.Nifti1Image:
    """Return a RAS-ordered image to the input's voxel order.

    The image may be on a different grid than the one :func:`to_ras` produced (e.g. a
    super-resolved volume); its own affine is carried through the inverse permutation/flips.
    When it is on the very grid ``to_ras`` produced, the recorded input affine is returned
    bit for bit.

    Parameters
    ----------
    img : Nifti1Image
        A 3D image in RAS voxel order.
    info : OrientationInfo
        From :func:`to_ras`.

    Returns
    -------
    Nifti1Image
        Voxels in the input's order; same world positions; input's header codes.
    """
    ras_ornt = io_orientation(img.affine)
    if not np.array_equal(ras_ornt, _RAS):
        raise ValueError(
            f"from_ras expects an image in RAS voxel order, got {''.join(aff2axcodes(img.affine))}"
        )
    back = ornt_transform(_RAS, info.ornt)
    data = apply_orientation(np.asanyarray(img.dataobj), back)
    affine = np.asarray(img.affine, dtype=np.float64) @ inv_ornt_aff(back, img.shape)
    same_grid = tuple(img.shape) == tuple(info.ras_shape) and np.allclose(
        img.affine, info.ras_affine, rtol=0.0, atol=1e-9
    )
    if same_grid:
        affine = info.input_affine.copy()
        extra = info.input_shape[3:]
        if extra:
            data = data.reshape(data.shape + tuple(extra))
    return _make_image(data, affine, img.header, info.sform_code, info.qform_code, back)
