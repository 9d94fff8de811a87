"""Cubic B-spline interpolation along the through-plane axis (the paper's baseline)."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..physics import SliceGeometry


def cubic_resample(data: np.ndarray, geom: SliceGeometry) -> np.ndarray:
    """Interpolate ``data`` along ``geom.axis`` onto the HR grid of ``geom``.

    HR sample ``j`` sits at LR index ``geom.hr_origin_in_lr_index + j * hr / spacing``;
    beyond the first and last slice centres the edge values are continued (no overshoot
    from extrapolation). Other axes are untouched.
    """
    n = data.ndim
    scale = np.ones(n)
    offset = np.zeros(n)
    scale[geom.axis] = geom.hr_mm / geom.spacing_mm
    offset[geom.axis] = geom.hr_origin_in_lr_index
    out_shape = geom.hr_shape(data.shape)
    with warnings.catch_warnings():  # a 1-D matrix selects scipy's fast zoom/shift path
        warnings.simplefilter("ignore", UserWarning)
        out = ndimage.affine_transform(
            np.asarray(data, dtype=np.float32),
            scale,
            offset,
            output_shape=out_shape,
            order=3,
            mode="nearest",
            prefilter=True,
        )
    return out.astype(np.float32)


def cubic_matrix(geom: SliceGeometry) -> np.ndarray:
    """The linear map of :func:`cubic_resample` along ``geom.axis``, as an ``(n_hr, n_lr)`` matrix.

    Column ``k`` is the interpolation of the ``k``-th unit slice (B-spline prefilter and edge
    continuation included), so that ``cubic_resample(y) = C y`` along the axis.

    Examples
    --------
    >>> geom = SliceGeometry.from_lr(0, 5, 1.0, 1.0, 0.25)
    >>> c = cubic_matrix(geom)
    >>> c.shape, bool(np.allclose(c.sum(axis=1), 1.0, atol=1e-5))  # constants are kept
    ((20, 5), True)
    """
    other = (geom.axis + 1) % 3  # carries the columns
    rest = 3 - geom.axis - other
    eye = np.eye(geom.n_lr, dtype=np.float32)[:, :, None]
    out = cubic_resample(np.moveaxis(eye, (0, 1, 2), (geom.axis, other, rest)), geom)
    return np.moveaxis(out, (geom.axis, other), (0, 1))[:, :, 0].astype(np.float64)


def cubic_super_resolve(
    img: nib.Nifti1Image, through_axis: int, thickness_mm: float, target_mm: float
) -> tuple[nib.Nifti1Image, SliceGeometry]:
    """Cubic B-spline upsampling of ``img`` along ``through_axis`` to ``target_mm``.

    The output affine places every original slice centre at the same world position
    (see :class:`~bida_app.physics.geometry.SliceGeometry`); in-plane is untouched.
    """
    zooms = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    geom = SliceGeometry.from_lr(
        through_axis,
        img.shape[through_axis],
        float(zooms[through_axis]),
        thickness_mm,
        target_mm,
    )
    data = cubic_resample(np.asarray(img.dataobj, dtype=np.float32), geom)
    out = nib.Nifti1Image(data, geom.hr_affine(img.affine), header=img.header)
    out.set_data_dtype(np.float32)
    return out, geom
