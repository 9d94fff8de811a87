"""N4 bias-field correction (ANTsPy) for rodent scans, with a rough head mask.

Rodent-sized defaults: the B-spline control-point spacing is given in mm
(``spline_distance_mm``, 10 mm by default: a rat head FOV of ~25-30 mm gets a mesh of 3
spans, refined twice over the three fitting levels), and is turned into an explicit mesh size
per axis, so anisotropic volumes (0.11 × 1.0 × 0.11 mm) get the right number of spans along
each axis. ANTs' own default (a single span, meant for 1 mm human heads) is not used.

ANTs works in LPS physical space; :func:`to_ants` / :func:`from_ants` convert nibabel affines
(RAS) to ANTs origin/spacing/direction and back. :func:`n4_correct` keeps the voxel order, so
its outputs carry the input affine and header unchanged.

Threads: ITK reads ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` once, at its first use in a
process. ``n_threads`` sets that variable when ITK has not run yet in this process (the
usual case in a Nipype worker); later changes cannot take effect and are logged.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..errors import BadDataError
from .orient import voxel_sizes

LOGGER = logging.getLogger(__name__)

#: B-spline control-point spacing (mm) at the coarsest fitting level.
SPLINE_DISTANCE_MM = 10.0
#: Iterations per fitting level and convergence threshold (ANTsPy's ``convergence``).
CONVERGENCE: dict[str, Any] = {"iters": [50, 50, 30], "tol": 1e-7}
#: Fewest voxels an axis may keep after N4's shrinking (larger factors are reduced).
MIN_SHRUNK_VOXELS = 6
_THREADS_ENV = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"
_LPS = np.diag([-1.0, -1.0, 1.0])
_itk_threads_in_use: str | None = None


@dataclass(frozen=True)
class N4Result:
    """Outputs of :func:`n4_correct`.

    Attributes
    ----------
    corrected : Nifti1Image
        ``input / bias`` (float32), input affine and header.
    bias : Nifti1Image
        Estimated multiplicative bias field (float32), geometric mean 1 inside the mask.
    mask : Nifti1Image
        Mask N4 used (uint8).
    params : dict
        JSON-serialisable settings and timings, for the sidecar.
    """

    corrected: nib.Nifti1Image
    bias: nib.Nifti1Image
    mask: nib.Nifti1Image
    params: dict[str, Any]


def to_ants(img: nib.spatialimages.SpatialImage) -> Any:
    """Convert a 3D nibabel image to an ANTs image with the same world geometry.

    ANTs/ITK use LPS world coordinates: ``origin = F @ t``, ``direction = F @ R``, where
    ``F = diag(-1, -1, 1)`` and the nibabel affine is ``[R @ diag(spacing) | t]`` in RAS.

    Parameters
    ----------
    img : SpatialImage
        3D image.

    Returns
    -------
    ants.ANTsImage
        float32 image, same voxel order.
    """
    import ants

    affine = np.asarray(img.affine, dtype=np.float64)
    spacing = voxel_sizes(affine)
    direction = _LPS @ (affine[:3, :3] / spacing)
    data = np.ascontiguousarray(np.asanyarray(img.dataobj), dtype=np.float32)
    return ants.from_numpy(
        data,
        origin=tuple(float(v) for v in _LPS @ affine[:3, 3]),
        spacing=tuple(float(v) for v in spacing),
        direction=direction,
    )


def from_ants(ants_img: Any, header: nib.Nifti1Header | None = None) -> nib.Nifti1Image:
    """Convert an ANTs image back to nibabel (inverse of :func:`to_ants`).

    Parameters
    ----------
    ants_img : ants.ANTsImage
        3D ANTs image.
    header : Nifti1Header, optional
        Header whose metadata to copy.

    Returns
    -------
    Nifti1Image
    """
    affine = np.eye(4)
    direction = np.asarray(ants_img.direction, dtype=np.float64)
    affine[:3, :3] = _LPS @ direction @ np.diag(np.asarray(ants_img.spacing, dtype=np.float64))
    affine[:3, 3] = _LPS @ np.asarray(ants_img.origin, dtype=np.float64)
    data = ants_img.numpy()
    out = nib.Nifti1Image(data, affine, header=header)
    out.header.set_data_dtype(data.dtype)
    out.header.set_sform(affine, code=1)
    out.header.set_qform(affine, code=1)
    return out


def _ellipsoid(radii_vox: np.ndarray) -> np.ndarray:
    """Boolean ellipsoid structuring element with the given radii (voxels, may be < 1)."""
    half = np.floor(radii_vox).astype(int)
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    dist = sum((g / max(r, 1e-6)) ** 2 for g, r in zip(grids, radii_vox, strict=True))
    return dist <= 1.0


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values`` (maximal between-class variance).

    Examples
    --------
    >>> v = np.r_[np.zeros(50), np.ones(50) * 10.0]
    >>> 0.0 < otsu_threshold(v) < 10.0
    True
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or values.min() == values.max():
        return float(values.min()) if values.size else 0.0
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    return float(centres[int(np.argmax((w0 * w1 * (m0 - m1) ** 2)[:-1]))])


def rough_head_mask(
    img: nib.spatialimages.SpatialImage,
    *,
    smooth_mm: float = 0.1,
    closing_mm: float = 0.5,
    threshold: float | None = None,
) -> nib.Nifti1Image:
    """Rough head (foreground) mask: Otsu threshold, closing, hole filling, largest component.

    The threshold is Otsu's on log intensities, which keeps the dim side of a head imaged
    with a surface coil (a linear-intensity Otsu threshold cuts through the head there).

    Parameters
    ----------
    img : SpatialImage
        3D magnitude image.
    smooth_mm : float
        Gaussian smoothing (sigma, mm) before thresholding, against noise.
    closing_mm : float
        Radius (mm) of the ellipsoidal closing that bridges dark rims such as skull.
    threshold : float, optional
        Intensity threshold; default Otsu's threshold of the log of the smoothed image
        (positive voxels between their 0.5th and 99.5th percentiles).

    Returns
    -------
    Nifti1Image
        uint8 mask (1 = head) with the input's affine.

    Examples
    --------
    >>> x = np.random.default_rng(0).uniform(0.5, 2.0, (20, 20, 10)).astype(np.float32)
    >>> x[5:15, 4:16, 2:8] += 100.0  # a 10 x 12 x 6 voxel "head" in noise
    >>> m = rough_head_mask(nib.Nifti1Image(x, np.diag([0.1, 0.1, 0.3, 1.0]))).get_fdata()
    >>> bool(m[5:15, 4:16, 2:8].all()), bool(m[3:17, 2:18, 1:9].sum() == m.sum())
    (True, True)
    """
    data = np.nan_to_num(np.asanyarray(img.dataobj).astype(np.float64))
    zooms = voxel_sizes(img.affine)
    smooth = ndimage.gaussian_filter(data, sigma=smooth_mm / zooms) if smooth_mm > 0 else data
    if threshold is None:
        positive = smooth[smooth > 0]
        if positive.size == 0:
            raise BadDataError("rough_head_mask: the image has no positive intensities")
        lo, hi = np.percentile(positive, [0.5, 99.5])
        inside = positive[(positive >= lo) & (positive <= hi)]
        threshold = float(np.exp(otsu_threshold(np.log(inside)))) if hi > lo else float(lo)
    mask = smooth > threshold
    if closing_mm > 0:
        element = _ellipsoid(closing_mm / zooms)
        pad = [(r, r) for r in (np.array(element.shape) // 2)]
        padded = np.pad(mask, pad)
        mask = ndimage.binary_closing(padded, structure=element)[
            tuple(slice(p, p + n) for (p, _), n in zip(pad, mask.shape, strict=True))
        ]
    mask = ndimage.binary_fill_holes(mask)
    slab = int(np.argmax(zooms))
    for k in range(mask.shape[slab]):
        index = [slice(None)] * 3
        index[slab] = k
        mask[tuple(index)] = ndimage.binary_fill_holes(mask[tuple(index)])
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = labels == (int(np.argmax(sizes)) + 1)
    out = nib.Nifti1Image(mask.astype(np.uint8), img.affine, header=img.header)
    out.header.set_data_dtype(np.uint8)
    return out


def _set_itk_threads(n_threads: int | None) -> str:
    """Set ITK's thread count if ITK has not run yet in this process; return the count used."""
    global _itk_threads_in_use
    if _itk_threads_in_use is None:
        if n_threads is not None:
            os.environ[_THREADS_ENV] = str(int(n_threads))
        _itk_threads_in_use = os.environ.get(_THREADS_ENV, "default")
    elif n_threads is not None and str(int(n_threads)) != _itk_threads_in_use:
        LOGGER.warning(
            "ITK already runs with %s threads in this process; n_threads=%d only applies in a "
            "new process",
            _itk_threads_in_use,
            n_threads,
        )
    return _itk_threads_in_use


def _effective_shrink(shape: tuple[int, ...], shrink_factor: int) -> int:
    """Largest factor <= ``shrink_factor`` leaving every axis >= MIN_SHRUNK_VOXELS voxels."""
    factor = max(1, int(shrink_factor))
    while factor > 1 and min(shape) // factor < MIN_SHRUNK_VOXELS:
        factor -= 1
    return factor


def n4_correct(
    img: nib.Nifti1Image,
    *,
    mask: nib.spatialimages.SpatialImage | None = None,
    shrink_factor: int = 4,
    convergence: dict[str, Any] | None = None,
    spline_distance_mm: float = SPLINE_DISTANCE_MM,
    n_threads: int | None = None,
    name: str | None = None,
) -> N4Result:
    """N4 bias-field correction with ANTsPy, parameters in physical units.

    Parameters
    ----------
    img : Nifti1Image
        3D magnitude image (any voxel order; not modified).
    mask : SpatialImage, optional
        Voxels N4 fits the field on; default :func:`rough_head_mask`. Non-positive and
        non-finite voxels are always left out (N4 works on log intensities).
    shrink_factor : int
        N4's downsampling factor for the fit (the same on all axes); reduced automatically so
        that every axis keeps at least ``MIN_SHRUNK_VOXELS`` voxels (a 24-slice coronal scan
        keeps 4, an 8-slice one gets 1).
    convergence : dict, optional
        ``{"iters": [...], "tol": float}``: iterations per fitting level (each level doubles
        the B-spline mesh) and the convergence threshold; default ``CONVERGENCE``.
    spline_distance_mm : float
        Control-point spacing at the coarsest level, in mm; the mesh along each axis is
        ``max(1, round(extent_mm / spline_distance_mm))`` spans.
    n_threads : int, optional
        ITK threads (see the module docstring).
    name : str, optional
        Label for log messages and errors (default: the image's file name).

    Returns
    -------
    N4Result
        Corrected image, bias field, mask and parameters. The correction is applied over the
        whole FOV (``input / bias``): the fitted field is smooth, so there is no step at the
        mask edge (ANTs' own output leaves voxels outside the mask uncorrected).

    Raises
    ------
    BadDataError
        If the mask is empty or does not match the image.
    """
    import ants

    convergence = dict(CONVERGENCE if convergence is None else convergence)
    name = name or img.get_filename() or "<in-memory image>"
    if img.ndim != 3:
        raise BadDataError(f"{name}: N4 expects a 3D image, got shape {img.shape}")
    data = np.asanyarray(img.dataobj).astype(np.float32)
    finite = np.isfinite(data)
    if not finite.all():
        LOGGER.warning("%s: %d non-finite voxels set to 0 for N4", name, int((~finite).sum()))
        data = np.where(finite, data, np.float32(0.0))
    mask_source = "given"
    if mask is None:
        mask, mask_source = rough_head_mask(img), "rough_head_mask"
    if tuple(mask.shape) != tuple(data.shape):
        raise BadDataError(f"{name}: mask shape {mask.shape} does not match image {data.shape}")
    fit = (np.asanyarray(mask.dataobj) > 0) & (data > 0)
    if not fit.any():
        raise BadDataError(f"{name}: the N4 mask has no positive voxels")
    zooms = voxel_sizes(img.affine)
    extent = np.array(data.shape) * zooms
    mesh = [max(1, int(round(e / spline_distance_mm))) for e in extent]
    shrink = _effective_shrink(data.shape, shrink_factor)
    if shrink != shrink_factor:
        LOGGER.info(
            "%s: N4 shrink factor %d -> %d for shape %s", name, shrink_factor, shrink, data.shape
        )
    threads = _set_itk_threads(n_threads)
    geometry = nib.Nifti1Image(data, img.affine)
    start = time.perf_counter()
    bias_img = ants.n4_bias_field_correction(
        to_ants(geometry),
        mask=to_ants(nib.Nifti1Image(fit.astype(np.float32), img.affine)),
        shrink_factor=shrink,
        convergence={"iters": [int(i) for i in convergence["iters"]], "tol": convergence["tol"]},
        spline_param=mesh,
        return_bias_field=True,
    )
    elapsed = time.perf_counter() - start
    bias = bias_img.numpy().astype(np.float64)
    bias /= np.exp(np.mean(np.log(bias[fit])))
    corrected = (data / bias).astype(np.float32)
    params = {
        "software": f"ANTsPy {ants.__version__} n4_bias_field_correction",
        "shrink_factor": shrink,
        "shrink_factor_requested": int(shrink_factor),
        "convergence": {
            "iters": [int(i) for i in convergence["iters"]],
            "tol": convergence["tol"],
        },
        "spline_distance_mm": float(spline_distance_mm),
        "bspline_mesh": mesh,
        "spline_order": 3,
        "mask": mask_source,
        "mask_voxels": int(fit.sum()),
        "bias_range": [float(bias[fit].min()), float(bias[fit].max())],
        "itk_threads": threads,
        "elapsed_s": round(elapsed, 3),
    }
    LOGGER.info(
        "%s: N4 in %.1f s (shrink %d, mesh %s, mask %d voxels); bias %.3f-%.3f in mask",
        name,
        elapsed,
        shrink,
        mesh,
        params["mask_voxels"],
        *params["bias_range"],
    )
    mask_img = nib.Nifti1Image(fit.astype(np.uint8), img.affine, header=img.header)
    mask_img.header.set_data_dtype(np.uint8)
    return N4Result(
        corrected=_like(corrected, img),
        bias=_like(bias.astype(np.float32), img),
        mask=mask_img,
        params=params,
    )


def _like(data: np.ndarray, img: nib.Nifti1Image) -> nib.Nifti1Image:
    """float32 image with ``img``'s affine (bit for bit) and header."""
    out = nib.Nifti1Image(data, img.affine, header=img.header)
    out.header.set_data_dtype(data.dtype)
    return out
