"""Slice-selection profiles: the through-plane point-spread function of 2D multi-slice MRI.

A profile is a continuous function of the distance (in mm) from the slice centre. The operator
in :mod:`bida_app.physics.operator` integrates it over each high-resolution voxel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

PROFILE_KINDS = ("gaussian", "boxcar", "slr")


@dataclass(frozen=True)
class SliceProfile:
    """A slice profile h(z), z in mm from the slice centre; peak value 1.

    Parameters
    ----------
    kind : str
        One of :data:`PROFILE_KINDS`.
    fwhm_mm : float
        Full width at half maximum of the profile in mm.
    func : callable
        Vectorised ``h(z_mm) -> weights``.
    support_mm : float
        Half-width beyond which ``h`` is negligible (used to bound the matrix band).
    params : dict
        Parameters to record in sidecars.
    """

    kind: str
    fwhm_mm: float
    func: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False)
    support_mm: float
    params: dict = field(default_factory=dict, compare=False)

    def __call__(self, z_mm: np.ndarray) -> np.ndarray:
        return self.func(np.asarray(z_mm, dtype=np.float64))


def gaussian_profile(fwhm_mm: float) -> SliceProfile:
    """Gaussian profile of the given FWHM (the paper's model of A at inference)."""
    _check_positive(fwhm_mm)
    sigma = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return SliceProfile(
        kind="gaussian",
        fwhm_mm=float(fwhm_mm),
        func=lambda z: np.exp(-0.5 * (z / sigma) ** 2),
        support_mm=4.0 * sigma + 1e-9,
        params={"Profile": "gaussian", "FWHM_mm": float(fwhm_mm)},
    )


def boxcar_profile(width_mm: float) -> SliceProfile:
    """Ideal slab of the given width (FWHM = width)."""
    _check_positive(width_mm)
    half = width_mm / 2.0
    return SliceProfile(
        kind="boxcar",
        fwhm_mm=float(width_mm),
        func=lambda z: (np.abs(z) <= half).astype(np.float64),
        support_mm=half,
        params={"Profile": "boxcar", "FWHM_mm": float(width_mm)},
    )


def effective_fwhm(thickness_mm: float, hr_mm: float) -> float:
    """Kernel width that accounts for the HR voxel's own blur: ``sqrt(T**2 - h**2)``.

    When the HR image already integrates over ``hr_mm``, convolving it with a profile of
    width ``T`` over-blurs; removing the HR voxel's width in quadrature gives an overall
    width close to ``T``. Returns ``thickness_mm`` unchanged if ``hr_mm >= thickness_mm``.
    """
    if hr_mm >= thickness_mm:
        return float(thickness_mm)
    return float(math.sqrt(thickness_mm**2 - hr_mm**2))


def make_profile(
    kind: str,
    thickness_mm: float,
    *,
    hr_mm: float | None = None,
    effective: bool = False,
    tbw: float = 16.0,
) -> SliceProfile:
    """Build a slice profile whose FWHM equals the slice thickness.

    Parameters
    ----------
    kind : {"gaussian", "boxcar", "slr"}
        Profile shape.
    thickness_mm : float
        Nominal slice thickness (FWHM) in mm.
    hr_mm : float, optional
        HR voxel size; required when ``effective`` is true.
    effective : bool
        Use :func:`effective_fwhm` instead of the plain thickness.
    tbw : float
        Time-bandwidth product of the SLR pulse (``kind="slr"`` only).

    Examples
    --------
    >>> p = make_profile("gaussian", 1.0)
    >>> float(p(np.array([0.5]))[0])  # half maximum at half the FWHM
    0.5
    """
    width = thickness_mm
    if effective:
        if hr_mm is None:
            raise ValueError("effective=True needs hr_mm")
        width = effective_fwhm(thickness_mm, hr_mm)
    if kind == "gaussian":
        prof = gaussian_profile(width)
    elif kind == "boxcar":
        prof = boxcar_profile(width)
    elif kind == "slr":
        from .slr import slr_profile

        prof = slr_profile(width, tbw=tbw)
    else:
        raise ValueError(f"unknown slice profile {kind!r}; choose from {PROFILE_KINDS}")
    if effective:
        prof.params["EffectiveWidth"] = True
        prof.params["NominalThickness_mm"] = float(thickness_mm)
    return prof


def _check_positive(value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"slice width must be a positive finite number, got {value!r}")
