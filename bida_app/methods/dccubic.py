"""Data-consistent cubic: cubic B-spline interpolation, then one projection onto the slices.

The honest floor for any super-resolution method: nothing is learned, yet the result
re-degrades to the acquired slices. With ``A`` the slice operator (slice-profile
convolution then slice sampling along the through-plane axis, FWHM = slice thickness),

.. math:: x \\leftarrow x_{cubic} + A^{+}(y - A x_{cubic}),

the orthogonal projection of the cubic estimate onto ``{x : A x = y}``. It keeps what the
cubic estimate has in the null space of ``A`` and replaces its range-space part by the data.

``damping`` chooses ``A⁺`` (:data:`bida_app.config.DEFAULT_DC_DAMPING`; recorded in the sidecar):

- ``"auto"`` (the default): the exact ``A⁺`` after a noise-adaptive Wiener gain on the residual
  (:mod:`bida_app.methods.shrinkage`). Noise-free slices are matched exactly; on noisy ones the
  part of the residual that is noise is held back, and the result re-degrades to ``y`` up to
  that part.
- a number λ > 0: the Tikhonov-damped ``Aᵀ(AAᵀ + λ d I)⁻¹`` (d: mean of ``diag(AAᵀ)``), which
  shrinks the correction where the data determine the image only weakly, whatever the noise.
- 0: the exact projection.
"""

from __future__ import annotations

from typing import NamedTuple

import nibabel as nib
import numpy as np

from ..config import DEFAULT_DC_DAMPING, DEFAULT_SLICE_PROFILE, NOISE_FLOOR, check_dc_damping
from ..physics import SliceGeometry, SliceOperator
from ..preprocess.noise import noise_sigma, reference_peak
from .cubic import cubic_matrix, cubic_super_resolve
from .shrinkage import Shrinkage, intensity_groups, shrink


class DCCubicResult(NamedTuple):
    """What :func:`dc_cubic_super_resolve` returns."""

    image: nib.Nifti1Image
    """The data-consistent estimate (float32) on the cubic method's grid."""
    geometry: SliceGeometry
    """Its through-plane geometry."""
    residual: float
    """``‖A x − y‖ / ‖y‖`` of the float64 result."""
    shrinkage: Shrinkage | None
    """The Wiener gain and noise level of ``damping="auto"`` (None otherwise)."""


def projection_is_damped(method: str, damping: float | str) -> bool:
    """Whether ``method`` run with ``damping`` leaves a damped residual for the final projection
    to keep (:func:`bida_app.preprocess.restore.restore_acquired`'s ``damped``): dccubic, and
    BiDA (any prior), whose data term is the slices as dccubic explains them
    (:func:`explained_slices`)."""
    return (method == "dccubic" or method.startswith("bida")) and damping != 0


def project_onto_slices(
    x: np.ndarray,
    y: np.ndarray,
    geom: SliceGeometry,
    profile: str = DEFAULT_SLICE_PROFILE,
    damping: float = 0.0,
) -> tuple[np.ndarray, float]:
    """``x + A⁺(y − A x)`` on the HR grid of ``geom``, and the relative residual afterwards.

    Parameters
    ----------
    x : ndarray
        Estimate on the HR grid (``geom.hr_shape(y.shape)``).
    y : ndarray
        Acquired slices.
    geom : SliceGeometry
        Where the slices sit on the HR grid.
    profile : str
        Slice-profile kind of ``A`` (FWHM = ``geom.thickness_mm``).
    damping : float
        Tikhonov damping of ``A⁺`` (0: exact projection; see the module docstring).

    Returns
    -------
    ndarray, float64
        The projected estimate.
    float
        ``‖A x − y‖ / ‖y‖`` after the projection (rounding level when ``damping`` is 0).

    Examples
    --------
    >>> geom = SliceGeometry.from_lr(0, 4, 1.0, 1.0, 0.25)
    >>> y = np.random.default_rng(0).random((4, 3))
    >>> x, r = project_onto_slices(np.zeros((16, 3)), y, geom, damping=0.0)
    >>> x.shape, r < 1e-10
    ((16, 3), True)
    >>> 1e-10 < project_onto_slices(np.zeros((16, 3)), y, geom, damping=0.1)[1] < 0.1
    True
    """
    op = SliceOperator.from_geometry(geom, profile)
    y = np.asarray(y, np.float64)
    out = op.consistency(np.asarray(x, np.float64), y, damping)
    return out, op.relative_residual(out, y)


def shrunk_projection(
    x0: np.ndarray,
    y: np.ndarray,
    geom: SliceGeometry,
    interp: np.ndarray,
    profile: str = DEFAULT_SLICE_PROFILE,
) -> tuple[np.ndarray, float, Shrinkage]:
    """``x0 + A⁺ W (y − A x0)`` with the Wiener gains ``W`` of :mod:`~bida_app.methods.shrinkage`
    (one per intensity group of in-plane positions).

    Parameters
    ----------
    x0 : ndarray
        First estimate on the HR grid, ``interp @ y`` along ``geom.axis``.
    y : ndarray
        Acquired slices.
    geom : SliceGeometry
        Where the slices sit on the HR grid.
    interp : ndarray, shape (n_hr, n_lr)
        The linear map that made ``x0`` from ``y`` (how the slices' noise reached it).
    profile : str
        Slice-profile kind of ``A``.

    Returns
    -------
    ndarray, float64
        The corrected estimate.
    float
        ``‖A x − y‖ / ‖y‖`` afterwards (0 up to rounding when no noise is found).
    Shrinkage
        The gain and the noise level behind it.
    """
    op = SliceOperator.from_geometry(geom, profile)
    y = np.asarray(y, np.float64)
    x0 = np.asarray(x0, np.float64)
    residual = y - op(x0)
    noise_map = np.eye(geom.n_lr) - op.matrix @ interp
    peak = max(reference_peak(y), 0.0)
    groups = intensity_groups(y, geom.axis)
    sigma = noise_sigma(y, geom.axis)
    gain = shrink(residual, geom.axis, noise_map, sigma, NOISE_FLOOR * peak, groups, peak)
    out = x0 + op.pinv(gain.apply(residual, geom.axis))
    return out, op.relative_residual(out, y), gain


def dc_cubic_super_resolve(
    img: nib.Nifti1Image,
    through_axis: int,
    thickness_mm: float,
    target_mm: float,
    profile: str = DEFAULT_SLICE_PROFILE,
    damping: float | str = DEFAULT_DC_DAMPING,
) -> DCCubicResult:
    """Cubic interpolation of ``img`` along ``through_axis``, projected onto its slices.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Thick-slice image.
    through_axis : int
        Voxel axis of the through-plane direction.
    thickness_mm, target_mm : float
        Slice thickness (FWHM of the profile) and output through-plane voxel size.
    profile : str
        Slice-profile kind assumed for ``A``.
    damping : float or "auto"
        How the projection is regularised (see the module docstring).

    Returns
    -------
    DCCubicResult
        ``(image, geometry, residual, shrinkage)``.

    Raises
    ------
    ValueError
        An invalid ``damping``.
    """
    try:
        damping = check_dc_damping(damping)
    except ValueError as exc:
        raise ValueError(f"damping {exc}") from None
    cubic, geom = cubic_super_resolve(img, through_axis, thickness_mm, target_mm)
    y = np.asarray(img.dataobj, dtype=np.float64)
    x0 = np.asarray(cubic.dataobj, np.float64)
    gain = None
    if damping == "auto":
        x, resid, gain = shrunk_projection(x0, y, geom, cubic_matrix(geom), profile)
    else:
        x, resid = project_onto_slices(x0, y, geom, profile, damping)
    out = nib.Nifti1Image(x.astype(np.float32), cubic.affine, header=cubic.header)
    out.set_data_dtype(np.float32)
    return DCCubicResult(out, geom, resid, gain)


def explained_slices(
    img: nib.Nifti1Image,
    through_axis: int,
    thickness_mm: float,
    target_mm: float,
    profile: str = DEFAULT_SLICE_PROFILE,
    damping: float | str = DEFAULT_DC_DAMPING,
) -> tuple[nib.Nifti1Image, DCCubicResult | None]:
    """The slices as dccubic with ``damping`` explains them, ``A x_dccubic``: BiDA's data term.

    For the exact projection (``damping=0``) that is ``img`` itself. Otherwise it is
    ``y − (I − W) r`` (``"auto"``), the slices without the part of the residual that is noise,
    or the Tikhonov-damped equivalent, so that BiDA's range-space replacement does not put back
    what dccubic holds back.

    Returns
    -------
    nibabel.Nifti1Image
        The slices to condition on (float32, ``img``'s grid).
    DCCubicResult or None
        The dccubic run behind them (None for ``damping=0``).
    """
    if check_dc_damping(damping) == 0:
        return img, None
    res = dc_cubic_super_resolve(img, through_axis, thickness_mm, target_mm, profile, damping)
    op = SliceOperator.from_geometry(res.geometry, profile)
    y_hat = op(np.asarray(res.image.dataobj, np.float64)).astype(np.float32)
    out = nib.Nifti1Image(y_hat, img.affine, header=img.header)
    out.set_data_dtype(np.float32)
    return out, res
