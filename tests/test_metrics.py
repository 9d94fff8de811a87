"""PSNR, SSIM, Dice, foreground cropping and the consistency residual."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from bida_app.evaluation.metrics import (
    consistency_residual,
    crop_to_foreground,
    dice,
    foreground_box,
    psnr,
    ssim,
)
from bida_app.physics import SliceGeometry, SliceOperator


def _volume(seed: int = 0, shape: tuple[int, ...] = (20, 24, 16)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 2.0) * 100.0


def test_psnr_of_reference_against_itself_is_infinite() -> None:
    ref = _volume()
    assert psnr(ref, ref) == math.inf
    assert psnr(ref, ref, mask=ref > ref.mean()) == math.inf


def test_psnr_matches_definition_and_decreases_with_noise() -> None:
    ref = _volume()
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 1.0, ref.shape)
    rng_ = ref.max() - ref.min()
    expected = 10 * np.log10(rng_**2 / np.mean(noise**2))
    assert psnr(ref + noise, ref) == pytest.approx(expected, rel=1e-12)
    assert psnr(ref + 2 * noise, ref) == pytest.approx(expected - 20 * np.log10(2), rel=1e-9)
    assert psnr(ref + noise, ref, data_range=1.0) < psnr(ref + noise, ref)
    mask = np.zeros(ref.shape, bool)
    mask[5:10] = True
    m_expected = 10 * np.log10(np.ptp(ref[mask]) ** 2 / np.mean(noise[mask] ** 2))
    assert psnr(ref + noise, ref, mask=mask) == pytest.approx(m_expected, rel=1e-12)


def test_psnr_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="constant"):
        psnr(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        psnr(np.arange(3.0), np.arange(3.0), mask=np.zeros(3, bool))


def test_ssim_properties() -> None:
    ref = _volume()
    rng = np.random.default_rng(2)
    assert ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)
    small = ssim(ref + rng.normal(0, 1, ref.shape), ref)
    large = ssim(ref + rng.normal(0, 5, ref.shape), ref)
    assert 1.0 > small > large > 0.0
    # symmetric in its arguments when the data range is fixed
    x = ref + rng.normal(0, 2, ref.shape)
    assert ssim(x, ref, data_range=100.0) == pytest.approx(ssim(ref, x, data_range=100.0))
    # blurring loses structure
    assert ssim(ndimage.gaussian_filter(ref, 3.0), ref) < ssim(ref, ref)


def test_ssim_matches_brute_force_window_on_2d() -> None:
    """Central pixel SSIM equals the Gaussian-weighted statistics computed by hand."""
    rng = np.random.default_rng(3)
    ref = rng.random((21, 21))
    x = ref + rng.normal(0, 0.1, ref.shape)
    mask = np.zeros(ref.shape, bool)
    mask[10, 10] = True
    yy, xx = np.mgrid[-5:6, -5:6]
    w = np.exp(-(yy**2 + xx**2) / (2 * 1.5**2))
    w /= w.sum()
    a, b = x[5:16, 5:16], ref[5:16, 5:16]
    mu_a, mu_b = (w * a).sum(), (w * b).sum()
    va, vb = (w * a * a).sum() - mu_a**2, (w * b * b).sum() - mu_b**2
    cov = (w * a * b).sum() - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2  # data range 1
    expected = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (va + vb + c2)
    )
    assert ssim(x, ref, data_range=1.0, mask=mask) == pytest.approx(expected, rel=1e-9)


def test_dice_values() -> None:
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros((4, 4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    assert dice(np.zeros(5), np.zeros(5)) == 1.0
    with pytest.raises(ValueError):
        dice(np.zeros(3), np.zeros(4))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_dice_symmetric_and_bounded(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.random((6, 7)) > 0.5, rng.random((6, 7)) > 0.3
    d = dice(a, b)
    assert 0.0 <= d <= 1.0
    assert d == dice(b, a)


def test_crop_to_foreground_removes_zero_padding() -> None:
    core = _volume(shape=(8, 9, 10)) + 1.0
    ref = np.pad(core, ((3, 4), (0, 2), (5, 1)))
    x = ref + 0.5
    xc, rc = crop_to_foreground(x, ref)
    assert rc.shape == core.shape
    assert np.array_equal(rc, core)
    assert np.array_equal(xc, core + 0.5)
    # padding inflates PSNR; cropping removes the inflation
    assert psnr(x, ref) > psnr(xc, rc)
    # standardized volumes pad with -1
    box = foreground_box(np.pad(core, 2, constant_values=-1.0), pad_value=-1.0)
    assert [s.stop - s.start for s in box] == list(core.shape)
    with pytest.raises(ValueError, match="padding only"):
        foreground_box(np.zeros((3, 3)))


def test_consistency_residual_with_the_slice_operator() -> None:
    hr = _volume(shape=(12, 20, 10))
    geom = SliceGeometry.from_hr(1, 20, spacing_mm=1.0, thickness_mm=1.0, hr_mm=0.2)
    op = SliceOperator.from_geometry(geom, "boxcar")
    lr = op(hr)
    assert consistency_residual(hr, lr, op) == pytest.approx(0.0, abs=1e-12)
    assert consistency_residual(op.pinv(lr), lr, op) == pytest.approx(0.0, abs=1e-10)
    smooth = ndimage.gaussian_filter(hr, 2.0)
    assert consistency_residual(smooth, lr, op) > 1e-3
    with pytest.raises(ValueError, match="shape"):
        consistency_residual(hr, lr[:, :-1], op)
