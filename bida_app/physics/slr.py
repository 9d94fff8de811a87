"""Shinnar-Le Roux (SLR) slice profile, designed and Bloch-simulated with SigPy.

A 90° excitation pulse is designed with :func:`sigpy.mri.rf.slr.dzrf` (least-squares filter,
1 % pass- and stop-band ripple), its Cayley-Klein parameters are simulated across the slice with
:func:`sigpy.mri.rf.sim.abrm`, and the profile is the transverse magnetisation
``|Mxy| = |2 conj(a) b|``, normalised to peak 1. The position axis is then rescaled so that
the measured FWHM is exactly one unit, and ``slr_profile`` stretches it to the requested
width. The profile is kept over ``±SPAN_FWHM`` FWHMs (the stop band beyond is below 1 % and set
to zero) and linearly interpolated between the simulated samples. This module makes the table
(and measures widths with :func:`fwhm_of_samples`); :func:`bida_app.physics.profiles.slr_profile`
wraps it as a :class:`~bida_app.physics.profiles.SliceProfile`.

There is no fallback: if SigPy cannot be imported or fails, the error propagates.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SPAN_FWHM = 2.0
"""Half-width, in FWHMs, of the simulated profile; zero beyond."""

RIPPLE = 0.01
"""Pass-band and stop-band ripple used in the pulse design (sigpy ``d1``, ``d2``)."""

_N_POSITIONS = 8001


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


def fwhm_of_samples(z: np.ndarray, h: np.ndarray) -> float:
    """FWHM of a sampled single-peaked profile, by linear interpolation of the crossings.

    The outermost samples at or above half the maximum bound the width; each crossing is
    interpolated linearly with its outside neighbour.

    Examples
    --------
    >>> z = np.linspace(-2, 2, 401)
    >>> round(fwhm_of_samples(z, np.exp(-4 * np.log(2) * z**2)), 4)
    1.0
    """
    z = np.asarray(z, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    half = h.max() / 2.0
    above = np.flatnonzero(h >= half)
    i, j = above[0], above[-1]
    if i == 0 or j == h.size - 1:
        raise ValueError("profile does not fall below half maximum inside the sampled range")
    left = np.interp(half, [h[i - 1], h[i]], [z[i - 1], z[i]])
    right = np.interp(half, [h[j + 1], h[j]], [z[j + 1], z[j]])
    return float(right - left)
