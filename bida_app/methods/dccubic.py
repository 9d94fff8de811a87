"""Data-consistent cubic: cubic B-spline interpolation, then one projection onto the slices.

The honest floor for any super-resolution method: nothing is learned, yet the result
re-degrades to the acquired slices. With ``A`` the slice operator (slice-profile
convolution then slice sampling along the through-plane axis, FWHM = slice thickness),

.. math:: x \\leftarrow x_{cubic} + A^{+}(y - A x_{cubic}),

the orthogonal projection of the cubic estimate onto ``{x : A x = y}``. It keeps what the
cubic estimate has in the null space of ``A`` and replaces its range-space part by the data.

With ``damping`` λ > 0, ``A⁺`` becomes ``Aᵀ(AAᵀ + λ d I)⁻¹`` (d: mean of ``diag(AAᵀ)``): the
correction is shrunk where the data determine the image only weakly, which is where a wrong
slice profile or noise does the most harm, and the result re-degrades to ``y`` up to a small
residual (:data:`bida_app.config.DEFAULT_DC_DAMPING`; recorded in the sidecar).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from ..config import (
    AUTO_DAMPING_NOISE,
    DEFAULT_DC_DAMPING,
    DEFAULT_SLICE_PROFILE,
    check_dc_damping,
)
from ..physics import SliceGeometry, SliceOperator
from ..preprocess.noise import noise_level
from .cubic import cubic_super_resolve


def resolve_damping(
    spec: float | str, y: np.ndarray, through_axis: int
) -> tuple[float, float | None]:
    """The damping λ that ``spec`` asks for, and the noise level it was read from.

    Parameters
    ----------
    spec : float or "auto"
        A damping (>= 0), or ``"auto"``: ``DEFAULT_DC_DAMPING · max(1, (σ̂ / AUTO_DAMPING_NOISE)²)``
        with σ̂ the noise level of ``y`` (:func:`~bida_app.preprocess.noise.noise_level`).
    y : ndarray
        The thick slices.
    through_axis : int
        Their through-plane voxel axis.

    Returns
    -------
    float
        λ.
    float or None
        σ̂ (None for a given number).

    Examples
    --------
    >>> flat = np.full((32, 4, 32), 100.0)
    >>> resolve_damping(0.3, flat, 1)
    (0.3, None)
    >>> noisy = flat + np.random.default_rng(0).normal(0, 4.0, flat.shape)  # 4 % noise
    >>> lam, level = resolve_damping("auto", noisy, 1)
    >>> round(level, 2), 0.5 < lam < 0.8
    (0.04, True)
    """
    try:
        spec = check_dc_damping(spec)
    except ValueError as exc:
        raise ValueError(f"damping {exc}") from None
    if spec == "auto":
        level = noise_level(y, through_axis)
        return DEFAULT_DC_DAMPING * max(1.0, (level / AUTO_DAMPING_NOISE) ** 2), level
    return float(spec), None


def projection_is_damped(method: str, damping: float | str) -> bool:
    """Whether ``method`` run with ``damping`` leaves a damped residual for the final projection
    to keep (:func:`bida_app.preprocess.restore.restore_acquired`'s ``damped``)."""
    return method == "dccubic" and damping != 0


def project_onto_slices(
    x: np.ndarray,
    y: np.ndarray,
    geom: SliceGeometry,
    profile: str = DEFAULT_SLICE_PROFILE,
    damping: float = DEFAULT_DC_DAMPING,
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


def dc_cubic_super_resolve(
    img: nib.Nifti1Image,
    through_axis: int,
    thickness_mm: float,
    target_mm: float,
    profile: str = DEFAULT_SLICE_PROFILE,
    damping: float | str = DEFAULT_DC_DAMPING,
) -> tuple[nib.Nifti1Image, SliceGeometry, float]:
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
        Tikhonov damping of the projection (0: exact; "auto": :func:`resolve_damping`).

    Returns
    -------
    nibabel.Nifti1Image
        The data-consistent estimate (float32) on the cubic method's grid.
    SliceGeometry
        Its through-plane geometry.
    float
        Relative data-consistency residual of the float64 result.
    """
    cubic, geom = cubic_super_resolve(img, through_axis, thickness_mm, target_mm)
    y = np.asarray(img.dataobj, dtype=np.float64)
    damping = resolve_damping(damping, y, through_axis)[0]
    x, resid = project_onto_slices(
        np.asarray(cubic.dataobj, np.float64), y, geom, profile, damping
    )
    out = nib.Nifti1Image(x.astype(np.float32), cubic.affine, header=cubic.header)
    out.set_data_dtype(np.float32)
    return out, geom, resid
