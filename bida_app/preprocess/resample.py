"""B-spline resampling: in-plane to the model's voxel size, and onto any grid (inverse steps).

Grid convention (voxel centres): a voxel axis with ``n`` voxels of spacing ``d`` covers the
field of view ``n * d`` from the outer edge of its first voxel to the outer edge of its last,
centred on the middle voxel position ``(n - 1) / 2``. Resampling that axis to spacing ``v``
keeps the centre exactly and the extent as closely as a whole number of voxels allows:
``n' = round(n * d / v)`` voxels (ties to even, as in :class:`~bida_app.physics.SliceGeometry`),
new voxel ``j`` sitting at old index ``(n - 1) / 2 + (j - (n' - 1) / 2) * v / d``. The new
affine maps every new voxel to the world point of that old (fractional) index, so both grids
share their FOV centre in world space and their extents differ by less than half a new voxel.

Interpolation is scipy.ndimage's B-spline of the given order (cubic by default) with
``"reflect"`` boundary handling (the signal mirrored about the FOV edge). Axis-aligned
resampling is done axis by axis (the tensor-product spline is separable), so axes that do not
change are passed through untouched. Downsampling is plain interpolation, without
anti-alias smoothing, as in the paper's preprocessing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from scipy import ndimage

from .orient import voxel_sizes

LOGGER = logging.getLogger(__name__)

#: Entries of the voxel-to-voxel map this close to an integer are taken as that integer.
_SNAP = 1e-9


def inplane_grid(
    affine: np.ndarray, shape: Sequence[int], through_axis: int, voxel_mm: float
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Grid with the two in-plane axes at ``voxel_mm``, same FOV centre, through-plane kept.

    Parameters
    ----------
    affine : ndarray, shape (4, 4)
        Affine of the source grid.
    shape : sequence of int
        Spatial shape of the source grid (3 axes).
    through_axis : int
        Axis left unchanged.
    voxel_mm : float
        Target in-plane spacing (mm).

    Returns
    -------
    affine : ndarray, shape (4, 4)
        Affine of the new grid.
    shape : tuple of int
        Shape of the new grid.

    Examples
    --------
    >>> aff, shp = inplane_grid(np.diag([0.1125, 1.0, 0.1125, 1.0]), (256, 24, 256), 1, 0.2)
    >>> shp
    (144, 24, 144)
    >>> np.round(np.diag(aff), 4).tolist()
    [0.2, 1.0, 0.2, 1.0]
    >>> centre = lambda a, s: (a @ np.r_[(np.array(s) - 1) / 2, 1])[:3]
    >>> src = np.diag([0.1125, 1.0, 0.1125, 1.0])
    >>> bool(np.allclose(centre(aff, shp), centre(src, (256, 24, 256))))
    True
    """
    if voxel_mm <= 0:
        raise ValueError("voxel_mm must be positive")
    affine = np.asarray(affine, dtype=np.float64)
    zooms = voxel_sizes(affine)
    scale = np.eye(4)
    new_shape = list(int(n) for n in shape[:3])
    for axis in range(3):
        if axis == through_axis:
            continue
        n, step = new_shape[axis], voxel_mm / zooms[axis]
        n_new = max(1, int(round(n * zooms[axis] / voxel_mm)))
        scale[axis, axis] = step
        scale[axis, 3] = (n - 1) / 2.0 - (n_new - 1) / 2.0 * step
        new_shape[axis] = n_new
    return affine @ scale, tuple(new_shape)


def _interp_matrix(n: int, positions: np.ndarray, order: int, mode: str) -> np.ndarray:
    """Matrix ``W`` (len(positions) × n): ``W @ f`` is the spline of ``f`` at ``positions``."""
    weights = np.empty((positions.size, n), dtype=np.float64)
    impulse = np.zeros(n, dtype=np.float64)
    for i in range(n):
        impulse[i] = 1.0
        weights[:, i] = ndimage.map_coordinates(
            impulse, positions[None, :], order=order, mode=mode, cval=0.0
        )
        impulse[i] = 0.0
    return weights


def resample_axis(
    data: np.ndarray,
    axis: int,
    positions: np.ndarray,
    order: int = 3,
    mode: str = "reflect",
    cval: float = 0.0,
) -> np.ndarray:
    """Evaluate the 1D B-spline of ``data`` along ``axis`` at fractional ``positions``.

    Parameters
    ----------
    data : ndarray
        Input array (any number of axes).
    axis : int
        Axis to resample.
    positions : ndarray
        Source indices (float) of the output samples.
    order : int
        Spline order (0-5).
    mode : str
        scipy.ndimage boundary mode.
    cval : float
        Fill value for the constant modes.

    Returns
    -------
    ndarray (float64)
        ``data`` with ``axis`` replaced by ``len(positions)`` samples.

    Examples
    --------
    >>> resample_axis(np.arange(4.0)[None], 1, np.array([0.5, 1.5, 2.5]), order=1)
    array([[0.5, 1.5, 2.5]])
    """
    data = np.asarray(data, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.float64)
    weights = _interp_matrix(data.shape[axis], positions, order, mode)
    shift = cval if "constant" in mode else 0.0
    out = np.tensordot(weights, data - shift if shift else data, axes=([1], [axis]))
    out = np.moveaxis(out, 0, axis)
    return out + shift if shift else out


def resample_to_grid(
    data: np.ndarray,
    src_affine: np.ndarray,
    dst_affine: np.ndarray,
    dst_shape: Sequence[int],
    order: int = 3,
    mode: str = "nearest",
    cval: float = 0.0,
) -> np.ndarray:
    """Resample a 3D array from its grid onto another grid of the same world space.

    Parameters
    ----------
    data : ndarray, shape (X, Y, Z)
        Values on the source grid.
    src_affine, dst_affine : ndarray, shape (4, 4)
        Voxel-to-world affines of the source and destination grids.
    dst_shape : sequence of int
        Shape of the destination grid.
    order : int
        B-spline order (0-5; 3 = cubic).
    mode : str
        scipy.ndimage boundary mode for destination voxels outside the source FOV
        (``"nearest"`` repeats the edge voxel).
    cval : float
        Fill value for the constant modes.

    Returns
    -------
    ndarray, float64, shape ``dst_shape``

    Notes
    -----
    When the voxel-to-voxel map is axis-aligned (diagonal), the resampling is separable and
    done one axis at a time; axes whose map is the identity are copied, not interpolated.
    Otherwise ``scipy.ndimage.affine_transform`` is used.

    Examples
    --------
    >>> src = np.diag([0.2, 0.2, 1.0, 1.0])
    >>> dst, shape = inplane_grid(src, (4, 4, 3), 2, 0.1)
    >>> x = np.random.default_rng(0).random((4, 4, 3))
    >>> up = resample_to_grid(x, src, dst, shape)
    >>> up.shape
    (8, 8, 3)
    >>> back = resample_to_grid(up, dst, src, x.shape, order=1)
    >>> back.shape
    (4, 4, 3)
    """
    data = np.asarray(data, dtype=np.float64)
    vox = np.linalg.inv(np.asarray(src_affine, np.float64)) @ np.asarray(dst_affine, np.float64)
    near = np.round(vox)
    vox = np.where(np.abs(vox - near) < _SNAP, near, vox)
    lin, off = vox[:3, :3], vox[:3, 3]
    dst_shape = tuple(int(n) for n in dst_shape)
    if np.count_nonzero(lin - np.diag(np.diag(lin))) == 0:
        out = data
        for axis in range(3):
            scale, shift = lin[axis, axis], off[axis]
            if scale == 1.0 and shift == 0.0 and out.shape[axis] == dst_shape[axis]:
                continue
            positions = scale * np.arange(dst_shape[axis]) + shift
            out = resample_axis(out, axis, positions, order, mode, cval)
        return out
    return ndimage.affine_transform(
        data, lin, offset=off, output_shape=dst_shape, order=order, mode=mode, cval=cval
    )


def resample_inplane(
    img: nib.Nifti1Image, through_axis: int, voxel_mm: float, order: int = 3
) -> nib.Nifti1Image:
    """Resample the two in-plane axes of a volume to ``voxel_mm`` (cubic B-spline by default).

    The through-plane axis is copied untouched. The FOV centre is kept exactly and the FOV
    extent up to rounding to whole voxels (see the module docstring for the convention).

    Parameters
    ----------
    img : Nifti1Image
        3D volume (typically in RAS voxel order).
    through_axis : int
        Voxel axis of the slice direction (not resampled).
    voxel_mm : float
        Target in-plane voxel size in mm (the model's, 0.2 by default in bida).
    order : int
        B-spline order (3 = cubic, as in the paper).

    Returns
    -------
    Nifti1Image
        float32 volume on the new grid with its affine; other header fields copied.

    Examples
    --------
    >>> img = nib.Nifti1Image(np.ones((9, 3, 9), np.float32), np.diag([0.1, 1.0, 0.1, 1.0]))
    >>> out = resample_inplane(img, 1, 0.3)
    >>> out.shape, np.round(voxel_sizes(out.affine), 3).tolist()
    ((3, 3, 3), [0.3, 1.0, 0.3])
    >>> bool(np.allclose(out.get_fdata(), 1.0))
    True
    """
    if img.ndim != 3:
        raise ValueError(f"resample_inplane expects a 3D image, got shape {img.shape}")
    src_affine = np.asarray(img.affine, dtype=np.float64)
    dst_affine, dst_shape = inplane_grid(src_affine, img.shape, through_axis, voxel_mm)
    data = np.asanyarray(img.dataobj)
    out = resample_to_grid(data, src_affine, dst_affine, dst_shape, order=order, mode="reflect")
    LOGGER.info(
        "in-plane resampling %s mm -> %.4g mm (order %d): shape %s -> %s",
        np.round(voxel_sizes(src_affine), 5).tolist(),
        voxel_mm,
        order,
        tuple(img.shape),
        dst_shape,
    )
    out_img = nib.Nifti1Image(out.astype(np.float32), dst_affine, header=img.header)
    out_img.header.set_data_dtype(np.float32)
    hdr = img.header
    out_img.header.set_sform(dst_affine, code=max(int(hdr["sform_code"]), 1))
    out_img.header.set_qform(dst_affine, code=int(hdr["qform_code"]))
    return out_img
