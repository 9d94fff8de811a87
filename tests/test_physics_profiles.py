"""Slice profiles: FWHM, the SLR pulse's shape against a Gaussian, the effective width."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from bida_app.physics import (
    SliceGeometry,
    SliceOperator,
    effective_fwhm,
    fwhm_of_samples,
    make_profile,
    measure_fwhm,
    slr_profile,
)
from bida_app.physics.slr import RIPPLE, unit_slr_table


@pytest.mark.parametrize("kind", ["gaussian", "boxcar", "slr"])
@pytest.mark.parametrize("thickness", [0.5, 1.0, 0.37])
def test_measured_fwhm_matches_thickness(kind, thickness):
    prof = make_profile(kind, thickness)
    assert prof.fwhm_mm == thickness
    assert abs(measure_fwhm(prof) - thickness) <= 0.02 * thickness
    assert prof(np.array([0.0]))[0] == pytest.approx(1.0, abs=RIPPLE)


@pytest.mark.parametrize("tbw", [4, 8, 16, 32])
def test_slr_fwhm_for_any_tbw(tbw):
    prof = slr_profile(1.0, tbw=tbw)
    assert abs(measure_fwhm(prof) - 1.0) <= 0.02
    assert prof.params["TBW"] == tbw


@pytest.mark.parametrize("kind", ["gaussian", "boxcar", "slr"])
def test_operator_rows_have_the_thickness_as_fwhm(kind):
    """On a fine HR grid the rows of A (profile integrated over voxels) keep the FWHM."""
    hr = 0.01
    geom = SliceGeometry.from_hr(0, 400, 1.0, 1.0, hr)
    op = SliceOperator.from_geometry(geom, kind)
    row = op.matrix[geom.n_lr // 2]
    z = (np.arange(geom.n_hr) - geom.lr_centres[geom.n_lr // 2]) * hr
    assert abs(fwhm_of_samples(z, row) - 1.0) <= 0.02


def _transition_width(prof, fwhm: float) -> float:
    """Distance between the 90 % and 10 % points of the profile's right edge."""
    z = np.linspace(0.0, 2.0 * fwhm, 40001)
    h = prof(z)
    return float(z[np.flatnonzero(h >= 0.1)[-1]] - z[np.flatnonzero(h >= 0.9)[-1]])


def _local_maxima(h: np.ndarray) -> np.ndarray:
    return np.flatnonzero((h[1:-1] > h[:-2]) & (h[1:-1] > h[2:])) + 1


def test_slr_is_flatter_and_sharper_than_gaussian():
    t = 1.0
    slr, gauss = slr_profile(t), make_profile("gaussian", t)
    # flat top: within 35 % of the FWHM from the centre the SLR profile is ~1, the Gaussian
    # has already dropped to 2**(-4 * 0.35**2) = 0.71
    core = np.linspace(-0.35 * t, 0.35 * t, 701)
    assert slr(core).min() >= 0.98
    assert gauss(core).min() <= 0.72
    # sharp edge: the 90 %-10 % transition is a small fraction of the Gaussian's (0.716 FWHM)
    g_width = _transition_width(gauss, t)
    assert g_width == pytest.approx(0.716 * t, rel=1e-2)
    assert _transition_width(slr, t) <= 0.15 * g_width
    # more time-bandwidth, sharper edge
    assert _transition_width(slr_profile(t, tbw=4), t) > 2 * _transition_width(slr, t)


def test_slr_has_small_ripples_where_gaussian_has_none():
    t = 1.0
    slr, gauss = slr_profile(t), make_profile("gaussian", t)
    z_stop = np.linspace(0.75 * t, 1.95 * t, 12001)
    h_stop = slr(z_stop)
    peaks = _local_maxima(h_stop)
    assert len(peaks) >= 5  # side lobes ...
    assert 1e-4 <= h_stop[peaks].max() <= 2 * RIPPLE  # ... of the designed small amplitude
    z_pass = np.linspace(0.0, 0.4 * t, 4001)
    h_pass = slr(z_pass)
    assert len(_local_maxima(h_pass)) >= 1  # pass-band ripple ...
    assert np.ptp(h_pass) <= 2 * RIPPLE  # ... small
    # the Gaussian decreases monotonically: no ripple at all
    z = np.linspace(0.0, 2.0 * t, 4001)
    assert len(_local_maxima(gauss(z))) == 0
    assert np.all(np.diff(gauss(z)) <= 0)
    # and its tail is far larger than the SLR stop band just outside the slice
    assert gauss(np.array([0.75 * t]))[0] > 10 * slr(np.array([0.75 * t]))[0]


def test_slr_support_and_integral():
    prof = slr_profile(0.5)
    assert prof.support_mm == pytest.approx(1.0)
    assert np.all(prof(np.array([-1.01, 1.01, 3.0])) == 0.0)
    # the antiderivative integrates the interpolated profile
    z = np.linspace(-1.2, 1.2, 240001)
    h = prof(z)
    numeric = np.sum(0.5 * (h[1:] + h[:-1]) * np.diff(z))
    total = prof.integral(np.array([2.0]))[0] - prof.integral(np.array([-2.0]))[0]
    assert total == pytest.approx(numeric, rel=1e-5)
    assert prof.integral(np.array([0.0]))[0] == pytest.approx(total / 2, rel=1e-4)


def test_slr_simulation_is_cached_and_read_only():
    slr_profile(1.0, tbw=12)
    before = unit_slr_table.cache_info().hits
    slr_profile(0.3, tbw=12.0)
    assert unit_slr_table.cache_info().hits == before + 1
    u, m, _ = unit_slr_table(12.0)
    with pytest.raises(ValueError):
        m[0] = 2.0
    with pytest.raises(ValueError, match="time-bandwidth"):
        slr_profile(1.0, tbw=1.0)


def test_slr_does_not_fall_back_to_gaussian(monkeypatch):
    """Without SigPy, building an SLR profile fails loudly."""
    unit_slr_table.cache_clear()
    monkeypatch.setitem(sys.modules, "sigpy.mri.rf", None)
    try:
        with pytest.raises(ImportError):
            make_profile("slr", 1.0, tbw=10)
    finally:
        unit_slr_table.cache_clear()


def test_effective_width():
    t, h = 1.0, 0.2
    assert effective_fwhm(t, h) == pytest.approx(math.sqrt(t**2 - h**2))
    assert effective_fwhm(0.2, 0.3) == 0.2  # no narrowing when the voxel is the thicker
    prof = make_profile("gaussian", t, hr_mm=h, effective=True)
    assert prof.fwhm_mm == pytest.approx(math.sqrt(0.96))
    assert prof.params["NominalThickness_mm"] == t and prof.params["EffectiveWidth"]
    with pytest.raises(ValueError, match="hr_mm"):
        make_profile("gaussian", t, effective=True)


def _blurred_fwhm(prof, blur_fwhm: float) -> float:
    """FWHM of the profile convolved with a Gaussian of FWHM ``blur_fwhm`` (the HR PSF)."""
    dz = 1e-3
    z = np.arange(-3.0, 3.0 + dz / 2, dz)
    psf = make_profile("gaussian", blur_fwhm)(z)
    return fwhm_of_samples(z, np.convolve(prof(z), psf, mode="same"))


@pytest.mark.parametrize("t", [0.5, 1.0])
def test_effective_width_is_exact_for_gaussians_only(t):
    """Documented behaviour: quadrature subtraction suits Gaussians, not flat-topped slabs."""
    h = 0.2
    gauss = make_profile("gaussian", t, hr_mm=h, effective=True)
    assert _blurred_fwhm(gauss, h) == pytest.approx(t, rel=2e-3)
    box = make_profile("boxcar", t, hr_mm=h, effective=True)
    assert _blurred_fwhm(box, h) == pytest.approx(math.sqrt(t**2 - h**2), rel=5e-3)
    plain_slr = make_profile("slr", t)
    assert _blurred_fwhm(plain_slr, h) == pytest.approx(t, rel=1e-2)


def test_forward_model_tbw_is_the_configured_default_and_simulation_keeps_its_own():
    from bida_app.config import DEFAULT_SLR_TBW
    from bida_app.physics.profiles import forward_model_label, slr_tbw

    assert make_profile("slr", 1.0).params["TBW"] == DEFAULT_SLR_TBW
    assert make_profile("slr", 1.0, tbw=16.0).params["TBW"] == 16.0
    assert f"TBW {DEFAULT_SLR_TBW:g}" in forward_model_label("slr")
    assert slr_tbw("gaussian") == {} and slr_tbw("slr") == {"SliceProfileTBW": DEFAULT_SLR_TBW}
    # a sharper pulse has a flatter top: more weight at 40 % of the FWHM from the centre
    z = np.array([0.4])
    assert make_profile("slr", 1.0, tbw=16.0)(z)[0] > make_profile("slr", 1.0)(z)[0]
