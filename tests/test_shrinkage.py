"""The Wiener gain of dccubic's default projection, on residuals built to a known recipe."""

from __future__ import annotations

import numpy as np
import pytest

from bida_app.methods.cubic import cubic_matrix, cubic_resample
from bida_app.methods.shrinkage import residual_noise_bound, shrink, wiener_gain
from bida_app.physics import SliceGeometry, SliceOperator

GEOM = SliceGeometry.from_lr(1, 12, 1.0, 1.0, 0.25)


def _noise_map() -> np.ndarray:
    """``G = I − A C`` for the Gaussian A and the cubic interpolation of GEOM."""
    a = SliceOperator.from_geometry(GEOM, "gaussian").matrix
    return np.eye(GEOM.n_lr) - a @ cubic_matrix(GEOM)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cubic_matrix_is_the_cubic_interpolation(axis: int):
    geom = SliceGeometry.from_lr(axis, 9, 1.0, 1.0, 0.2)
    shape = [6, 7, 8]
    shape[axis] = 9
    y = np.random.default_rng(axis).random(shape).astype(np.float32)
    via_matrix = np.moveaxis(np.tensordot(cubic_matrix(geom), np.moveaxis(y, axis, 0), 1), 0, axis)
    np.testing.assert_allclose(via_matrix, cubic_resample(y, geom), atol=1e-5)


def test_no_noise_keeps_the_whole_correction():
    r = np.random.default_rng(0).normal(size=(30, GEOM.n_lr, 40))
    gain = shrink(r, 1, _noise_map(), 0.0)
    np.testing.assert_array_equal(gain.gains[0], np.eye(GEOM.n_lr))
    assert gain.kept == 1.0 and gain.sigma == 0.0


def test_a_residual_of_noise_only_is_dropped_and_its_level_found():
    """r = G n: the residual bound reads σ, and (almost) nothing is kept."""
    g = _noise_map()
    n = np.random.default_rng(1).normal(0, 0.5, (GEOM.n_lr, 20000))
    r = np.moveaxis((g @ n).reshape(GEOM.n_lr, 100, 200), 0, 1)
    gain = shrink(r, 1, g, 10.0)  # a loose in-plane bound: the residual's own takes over
    assert gain.sigma == pytest.approx(0.5, rel=0.1) and gain.sigma_inplane == 10.0
    assert gain.kept < 0.2


def test_signal_above_the_noise_is_kept():
    """A strong smooth signal in the residual survives; the noise-only components do not."""
    rng = np.random.default_rng(2)
    g = _noise_map()
    signal = np.outer(np.sin(np.linspace(0, np.pi, GEOM.n_lr)), rng.normal(0, 5.0, 20000))
    r = np.moveaxis((signal + g @ rng.normal(0, 0.5, signal.shape)).reshape(-1, 100, 200), 0, 1)
    gain = shrink(r, 1, g, 0.5)
    kept = gain.gains[0] @ np.sin(np.linspace(0, np.pi, GEOM.n_lr))
    np.testing.assert_allclose(kept, np.sin(np.linspace(0, np.pi, GEOM.n_lr)), atol=0.05)
    assert gain.kept < 0.5


def test_gain_is_a_shrinkage_and_the_bound_holds():
    rng = np.random.default_rng(3)
    g = _noise_map()
    s = rng.normal(size=(GEOM.n_lr, GEOM.n_lr))
    cov = s @ s.T + 0.3**2 * g @ g.T  # signal plus noise of σ = 0.3
    assert residual_noise_bound(cov, g) >= 0.3 * (1 - 1e-9)
    mu = np.linalg.eigvals(wiener_gain(cov, 0.3**2 * g @ g.T))
    assert np.all(np.abs(mu.imag) < 1e-9) and mu.real.min() > -1e-9 and mu.real.max() < 1 + 1e-9


def test_the_floor_is_taken_off_in_quadrature():
    """What clean anatomy reads is no evidence of noise: a reading under the floor keeps the
    exact projection, one above it is lowered in quadrature."""
    g = _noise_map()
    n = np.random.default_rng(4).normal(0, 0.5, (GEOM.n_lr, 20000))
    r = np.moveaxis((g @ n).reshape(GEOM.n_lr, 100, 200), 0, 1)
    under = shrink(r, 1, g, 0.5, floor=0.6)
    np.testing.assert_array_equal(under.gains[0], np.eye(GEOM.n_lr))
    assert under.sigma == 0.0 and under.sigma_floor == 0.6
    lowered = shrink(r, 1, g, 0.5, floor=0.3)
    assert lowered.sigma == pytest.approx(np.sqrt(min(0.5, lowered.sigma_residual) ** 2 - 0.09))
    assert shrink(r, 1, g, 0.5).kept < lowered.kept < 1.0


def test_intensity_groups_get_their_own_gain():
    """Air (noise only) and anatomy (strong signal) in one scan: each group keeps what it
    holds, and the estimate of the noise-free residual beats one pooled gain."""
    from bida_app.methods.shrinkage import intensity_groups

    rng = np.random.default_rng(5)
    g = _noise_map()
    n_cols = 20000
    signal = rng.normal(0, 2.0, (GEOM.n_lr, n_cols))
    signal[:, : n_cols // 2] = 0.0  # air
    r_true = signal
    r = r_true + g @ rng.normal(0, 0.5, signal.shape)
    y = np.zeros_like(r) + (np.arange(n_cols) >= n_cols // 2)  # air dark, anatomy bright
    to_vol = lambda a: np.moveaxis(a.reshape(GEOM.n_lr, 100, 200), 0, 1)  # noqa: E731
    groups = intensity_groups(to_vol(y), 1, 2)
    assert set(np.unique(groups)) == {0, 1}
    grouped = shrink(to_vol(r), 1, g, 0.5, groups=groups)
    pooled = shrink(to_vol(r), 1, g, 0.5)
    assert np.trace(grouped.gains[0]) < 0.2 * np.trace(grouped.gains[1])
    err = [np.linalg.norm(s.apply(to_vol(r), 1) - to_vol(r_true)) for s in (grouped, pooled)]
    assert err[0] < 0.9 * err[1]
    assert 0 < grouped.kept < 1
