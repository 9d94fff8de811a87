"""The through-plane operator A: pseudo-inverse identities, adjoint, projectors, backends."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bida_app.physics import AxisOperator, SliceGeometry, SliceOperator, make_profile

HR_MM = 0.2
FACTORS = (2.0, 2.5, 3.0, 4.0, 5.0)
# thickness / spacing: < 1 is a slice gap, > 1 a slice overlap
THICKNESS_RATIOS = (0.6, 1.0, 1.5, 2.0)


@st.composite
def operators(draw):
    """A SliceOperator over factors, gaps/overlaps, profiles and all three axes."""
    factor = draw(st.sampled_from(FACTORS))
    ratio = draw(st.sampled_from(THICKNESS_RATIOS))
    kind = draw(st.sampled_from(("gaussian", "boxcar", "slr")))
    axis = draw(st.integers(0, 2))
    n_hr = draw(st.integers(12, 36))
    spacing = factor * HR_MM
    geom = SliceGeometry.from_hr(axis, n_hr, spacing, ratio * spacing, HR_MM)
    # shift all slices by a random fraction of an HR voxel (grid not aligned with the slices)
    shift = draw(st.floats(-0.5, 0.5))
    centres = np.clip(geom.lr_centres + shift, -0.5, n_hr - 0.5)
    prof = make_profile(kind, geom.thickness_mm)
    return SliceOperator(n_hr, centres, HR_MM, prof, axis)


def _shape(op: AxisOperator, n: int) -> tuple[int, ...]:
    shape = [3, 4, 2]
    shape[op.axis] = n
    return tuple(shape)


def _signals(op: AxisOperator, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random float64 arrays in the domain (x, HR) and the range (y, slices) of ``op``."""
    rng = np.random.default_rng(seed)
    m, n = op.shape
    return rng.standard_normal(_shape(op, n)), rng.standard_normal(_shape(op, m))


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(op=operators(), seed=st.integers(0, 2**16))
def test_pinv_identities_float64(op, seed):
    x, y = _signals(op, seed)
    ax = op(x)
    assert np.abs(op(op.pinv(ax)) - ax).max() <= 1e-5  # A A+ A = A
    py = op.pinv(y)
    assert np.abs(op.pinv(op(py)) - py).max() <= 1e-5  # A+ A A+ = A+
    # same identities on the matrices themselves
    a, p = op.matrix, op.pinv_matrix
    assert np.abs(a @ p @ a - a).max() <= 1e-5
    assert np.abs(p @ a @ p - p).max() <= 1e-5


@SETTINGS
@given(op=operators(), seed=st.integers(0, 2**16))
def test_pinv_identities_float32_torch(op, seed):
    x, y = (torch.from_numpy(v).float() for v in _signals(op, seed))
    ax = op(x)
    assert ax.dtype == torch.float32
    assert _rel(op(op.pinv(ax)), ax) <= 1e-3
    py = op.pinv(y)
    assert _rel(op.pinv(op(py)), py) <= 1e-3


@SETTINGS
@given(op=operators(), seed=st.integers(0, 2**16))
def test_adjoint_dot_product(op, seed):
    x, y = _signals(op, seed)
    lhs, rhs = np.vdot(op(x), y), np.vdot(x, op.H(y))
    assert abs(lhs - rhs) <= 1e-10 * max(abs(lhs), 1.0)
    assert op.H.H is op


@SETTINGS
@given(op=operators(), seed=st.integers(0, 2**16))
def test_null_projector(op, seed):
    x, y = _signals(op, seed)
    null = op.null_projector
    px = null(x)
    assert np.abs(null(px) - px).max() <= 1e-8  # idempotent
    py = op.pinv(y)
    assert np.abs(null(py)).max() <= 1e-8 * max(np.abs(py).max(), 1.0)  # kills A+ y
    assert np.abs(op(px)).max() <= 1e-8  # null space of A
    rng_x = op.range_projector(x)
    assert np.abs(rng_x + px - x).max() <= 1e-10
    # DDNM consistency step reproduces the measurements exactly
    assert np.abs(op(op.consistency(x, y)) - op(op.pinv(y))).max() <= 1e-8


@SETTINGS
@given(op=operators(), seed=st.integers(0, 2**16))
def test_numpy_and_torch_agree(op, seed):
    x, _ = _signals(op, seed)
    for f in (op, op.H @ op, op.pinv @ op, op.null_projector):
        ref = f(x)
        got64 = f(torch.from_numpy(x))
        assert got64.dtype == torch.float64
        assert np.abs(got64.numpy() - ref).max() <= 1e-12 * max(np.abs(ref).max(), 1.0)
        got32 = f(torch.from_numpy(x).float())
        assert _rel(got32.numpy(), ref) <= 1e-5
        assert _rel(f(x.astype(np.float32)), ref) <= 1e-5


def test_low_precision_and_integer_inputs():
    op = SliceOperator.from_geometry(SliceGeometry.from_hr(2, 40, 0.5, 0.5, HR_MM), "slr")
    x = torch.rand(2, 3, 40, dtype=torch.float64)
    ref = op(x)
    for dtype in (torch.bfloat16, torch.float16):
        out = op(x.to(dtype))
        assert out.dtype == dtype
        assert _rel(out.double(), ref) <= 2e-2
    last = op.along(-1)
    assert last(np.ones((2, 40), np.float16)).dtype == np.float16
    assert last(np.ones(40, np.int64)).dtype == np.float64
    assert last(torch.ones(40, dtype=torch.int64)).dtype == torch.float32
    with pytest.raises(ValueError, match="axis 2"):
        op(np.ones(40))
    # a constant image stays constant (unit row sums), even at the grid ends
    np.testing.assert_allclose(last(np.full(40, 7.0)), 7.0, rtol=1e-12)


def test_batched_2d_and_along():
    geom = SliceGeometry.from_hr(1, 30, 0.5, 0.5, HR_MM)
    op = SliceOperator.from_geometry(geom, "gaussian")
    x = torch.randn(5, 2, 30, 7, dtype=torch.float64)  # batch, channel, H (through-plane), W
    y = op.along(2)(x)
    assert tuple(y.shape) == (5, 2, geom.n_lr, 7)
    ref = op(x.permute(0, 2, 1, 3).numpy())  # same data with through-plane on axis 1
    np.testing.assert_allclose(y.permute(0, 2, 1, 3).numpy(), ref, atol=1e-12)
    # negative axes, and the derived operators follow the new axis
    last = op.along(-1)
    z = torch.randn(4, 3, 30, dtype=torch.float64)
    assert tuple(last.pinv(last(z)).shape) == (4, 3, 30)
    assert last.null_projector.axis == -1 and last.H.axis == -1 and op.pinv.axis == 1
    np.testing.assert_allclose(last(z).numpy(), op(z.permute(0, 2, 1).numpy()).transpose(0, 2, 1))
    # autograd flows through the operator
    w = torch.randn(2, 30, 3, requires_grad=True)
    op.pinv(op(w)).sum().backward()
    assert w.grad is not None and w.grad.shape == w.shape


def test_operator_application_syntax_and_errors():
    op = SliceOperator.from_geometry(SliceGeometry.from_hr(0, 20, 0.5, 0.5, HR_MM))
    x = np.random.default_rng(1).random((20, 2))
    np.testing.assert_array_equal(op @ x, op(x))
    assert (op.H @ op).shape == (20, 20)
    with pytest.raises(ValueError, match="expects length 20"):
        op(np.ones((19, 2)))
    with pytest.raises(ValueError, match="same axis"):
        op @ op.along(1).H
    with pytest.raises(ValueError, match="outside the HR grid"):
        SliceOperator(10, [2.0, 11.0], HR_MM, make_profile("gaussian", 0.5), 0)


@pytest.mark.parametrize("kind", ["gaussian", "boxcar", "slr"])
@pytest.mark.parametrize("factor", FACTORS)
def test_exact_integration_matches_fine_sampling(kind, factor):
    """Rows integrate the profile over each HR voxel (antiderivative vs. many sub-samples)."""
    geom = SliceGeometry.from_hr(0, 40, factor * HR_MM, factor * HR_MM, HR_MM)
    prof = make_profile(kind, geom.thickness_mm)
    exact = SliceOperator(geom.n_hr, geom.lr_centres, HR_MM, prof, 0).matrix
    sampled = dataclasses.replace(prof, antiderivative=None)
    fine = SliceOperator(geom.n_hr, geom.lr_centres, HR_MM, sampled, 0, oversample=2000).matrix
    assert np.abs(exact - fine).max() <= 2e-3
    np.testing.assert_allclose(exact.sum(axis=1), 1.0, rtol=1e-12)


def test_boxcar_partial_volume_is_exact():
    """A 0.5 mm slab on a 0.2 mm grid spans 2.5 voxels: partial voxels weigh what they overlap."""
    op = SliceOperator(9, [4.0, 4.25], HR_MM, make_profile("boxcar", 0.5), 0)
    # centred on voxel 4: [2.75, 5.25] in voxel units; centred at 4.25: [3.0, 5.5]
    np.testing.assert_allclose(op.matrix[0], np.array([0, 0, 0, 0.75, 1, 0.75, 0, 0, 0]) / 2.5)
    np.testing.assert_allclose(op.matrix[1], np.array([0, 0, 0, 0.5, 1, 1, 0, 0, 0]) / 2.5)


def test_from_affines_matches_geometry():
    """The affine route and the geometry route give the same slice positions and matrix."""
    geom = SliceGeometry.from_lr(1, 12, 0.5, 0.5, HR_MM)
    lr_aff = np.array([[0, 0, 0.2, 1.0], [0, 0.5, 0, -3.0], [0.2, 0, 0, 2.0], [0, 0, 0, 1]])
    hr_aff = geom.hr_affine(lr_aff)
    a = SliceOperator.from_affines(hr_aff, geom.n_hr, lr_aff, geom.n_lr, 1, "gaussian")
    b = SliceOperator.from_geometry(geom, "gaussian")
    np.testing.assert_allclose(a.lr_centres, geom.lr_centres, atol=1e-9)
    np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-12)
    np.testing.assert_allclose(geom.lr_affine(hr_aff), lr_aff, atol=1e-12)


@pytest.mark.parametrize("kind", ["gaussian", "boxcar", "slr"])
def test_operator_pickles(kind):
    """Operators cross process boundaries (Nipype MultiProc) despite closure-based profiles."""
    geom = SliceGeometry.from_hr(1, 30, 0.5, 0.5, HR_MM)
    op = SliceOperator.from_geometry(geom, kind, effective=True, tbw=8)
    x = torch.randn(2, 30, 3, dtype=torch.float64)
    op(x)  # fills the torch cache, which is not pickled
    back = pickle.loads(pickle.dumps(op))
    np.testing.assert_array_equal(back.matrix, op.matrix)
    np.testing.assert_array_equal(back.pinv(back(x)).numpy(), op.pinv(op(x)).numpy())
    assert back.profile.params == op.profile.params and back.profile.fwhm_mm == op.profile.fwhm_mm
    np.testing.assert_array_equal(
        back.profile(np.linspace(-1, 1, 9)), op.profile(np.linspace(-1, 1, 9))
    )


# --- damped pseudo-inverse (dccubic's default projection) ---------------------------------


def _gaussian_op(n_hr: int = 40, factor: float = 5.0) -> SliceOperator:
    geom = SliceGeometry.from_hr(1, n_hr, factor * HR_MM, factor * HR_MM, HR_MM)
    return SliceOperator.from_geometry(geom, "gaussian")


def test_damped_pinv_is_the_tikhonov_formula_and_zero_is_exact():
    op = _gaussian_op()
    m = op.matrix
    gram = m @ m.T
    lam = 0.1
    expected = m.T @ np.linalg.inv(gram + lam * np.mean(np.diag(gram)) * np.eye(len(gram)))
    np.testing.assert_allclose(op.damped_pinv(lam).matrix, expected, atol=1e-12)
    assert op.damped_pinv(0.0) is op.pinv
    assert op.damped_pinv(lam) is op.damped_pinv(lam)  # cached per value
    with pytest.raises(ValueError, match="damping"):
        op.damped_pinv(-0.1)
    with pytest.raises(ValueError, match="damping"):
        op.damped_pinv(float("nan"))


def test_damped_consistency_shrinks_the_correction_and_its_residual_grows():
    """The residual after a damped step is ``λd(AAᵀ + λd)⁻¹`` times the one before: it grows
    with λ, stays below the starting residual, and λ = 0 is the exact projection."""
    rng = np.random.default_rng(0)
    op = _gaussian_op()
    y = rng.random((3, op.shape[0], 2))
    x0 = rng.random((3, op.shape[1], 2))
    before = op.relative_residual(x0, y)
    after = [op.relative_residual(op.consistency(x0, y, lam), y) for lam in (0.0, 0.05, 0.1, 1.0)]
    assert after[0] < 1e-12
    assert after[1] < after[2] < after[3] < before
    # the correction lies in A's row space: the null-space part of x0 is kept at any λ
    null = op.null_projector
    for lam in (0.1, 1.0):
        np.testing.assert_allclose(null(op.consistency(x0, y, lam)), null(x0), atol=1e-10)


def test_damped_pinv_follows_the_operator_to_another_axis():
    op = _gaussian_op()
    damped = op.damped_pinv(0.1)
    moved = op.along(0)
    assert moved.damped_pinv(0.1).axis == 0 and damped.axis == 1
    y = np.random.default_rng(1).random((op.shape[0], 3))
    np.testing.assert_allclose(moved.damped_pinv(0.1)(y), damped.matrix @ y, atol=1e-12)
