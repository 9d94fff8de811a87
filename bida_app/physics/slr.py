"""Shinnar-Le Roux (SLR) slice profile, designed and Bloch-simulated with SigPy.

A 90° excitation pulse is designed with :func:`sigpy.mri.rf.slr.dzrf` (least-squares filter,
1 % pass- and stop-band ripple), its Cayley-Klein parameters are simulated across the slice with
:func:`sigpy.mri.rf.sim.abrm`, and the profile is the transverse magnetisation
``|Mxy| = |2 conj(a) b|``, normalised to peak 1. The position axis is then rescaled so that
the measured FWHM is exactly one unit, and :func:`slr_profile` stretches it to the requested
width. The profile is kept over ``±SPAN_FWHM`` FWHMs (the stop band beyond is below 1 % and set
to zero) and linearly interpolated between the simulated samples.

There is no fallback: if SigPy cannot be imported or fails, the error propagates.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .profiles import SliceProfile, _check_positive, fwhm_of_samples

SPAN_FWHM = 2.0
"""Half-width, in FWHMs, of the simulated profile; zero beyond."""

RIPPLE = 0.01
"""Pass-band and stop-band ripple used in the pulse design (sigpy ``d1``, ``d2``)."""

_N_POSITIONS = 8001


def slr_profile(fwhm_mm: float, tbw: float = 16.0) -> SliceProfile:
    """SLR excitation profile with the given FWHM.

    Parameters
    ----------
    fwhm_mm : float
        Slice thickness (measured FWHM of ``|Mxy|``) in mm.
    tbw : float
        Time-bandwidth product of the pulse; higher gives a flatter top and sharper edges.

    Returns
    -------
    SliceProfile
        Profile with ``kind="slr"``, zero beyond ``SPAN_FWHM * fwhm_mm``.

    Examples
    --------
    >>> p = slr_profile(0.5)
    >>> [round(float(v), 3) for v in p(np.array([0.0, 0.25, 1.5]))]
    [1.0, 0.5, 0.0]
    """
    _check_positive(fwhm_mm)
    if not tbw >= 2.0:
        raise ValueError(f"SLR time-bandwidth product must be >= 2, got {tbw!r}")
    u, m, cum = unit_slr_table(float(tbw))
    width = float(fwhm_mm)

    def func(z: np.ndarray) -> np.ndarray:
        return np.interp(z / width, u, m, left=0.0, right=0.0)

    def antiderivative(z: np.ndarray) -> np.ndarray:
        return width * np.interp(z / width, u, cum, left=0.0, right=cum[-1])

    return SliceProfile(
        kind="slr",
        fwhm_mm=width,
        func=func,
        support_mm=SPAN_FWHM * width,
        params={"Profile": "slr", "FWHM_mm": width, "TBW": float(tbw), "Ripple": RIPPLE},
        antiderivative=antiderivative,
    )


@lru_cache(maxsize=16)
def unit_slr_table(tbw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulated SLR profile with unit FWHM: positions, ``|Mxy|`` and its running integral.

    Cached per ``tbw``; the returned arrays are read-only.

    Parameters
    ----------
    tbw : float
        Time-bandwidth product.

    Returns
    -------
    u : ndarray
        Positions in FWHM units, covering ``[-SPAN_FWHM, SPAN_FWHM]``.
    m : ndarray
        ``|Mxy|`` at ``u``, peak 1.
    cum : ndarray
        Trapezoidal running integral of ``m`` over ``u`` (exact for the linear interpolant).
    """
    from sigpy.mri.rf import sim, slr

    n_pulse = int(max(256, 32 * np.ceil(tbw)))
    pulse = slr.dzrf(n=n_pulse, tb=tbw, ptype="ex", ftype="ls", d1=RIPPLE, d2=RIPPLE)
    # Positions in cycles per pulse length: the nominal FWHM is ~tbw in these units.
    x = np.linspace(-1.1 * SPAN_FWHM * tbw, 1.1 * SPAN_FWHM * tbw, _N_POSITIONS)
    a, b = sim.abrm(pulse, x, balanced=True)
    m = np.abs(2.0 * np.conj(a) * b)
    m /= m.max()
    u = x / fwhm_of_samples(x, m)
    keep = np.abs(u) <= SPAN_FWHM
    u, m = u[keep], m[keep]
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (m[1:] + m[:-1]) * np.diff(u))])
    for arr in (u, m, cum):
        arr.setflags(write=False)
    return u, m, cum
