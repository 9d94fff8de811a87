"""Back to the acquired data: the field put back, and the final projection of the
data-consistent methods (exact, or keeping a damped method's residual)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bida_app.methods.dccubic import dc_cubic_super_resolve
from bida_app.preprocess.restore import restore_acquired, slice_operator

AFFINE = np.diag([0.25, 0.25, 1.0, 1.0])


def _images(seed: int = 0) -> tuple[nib.Nifti1Image, nib.Nifti1Image, nib.Nifti1Image]:
    """Acquired slices (axis 2, 1 mm), a smooth bias field, and the corrected slices."""
    rng = np.random.default_rng(seed)
    y = (rng.random((8, 9, 10)) + 1.0).astype(np.float32)
    z = np.linspace(-1, 1, 10)
    b = (1.0 + 0.2 * z[None, None, :] + 0.1 * np.linspace(-1, 1, 8)[:, None, None]) * np.ones(
        (8, 9, 10)
    )
    acquired = nib.Nifti1Image(y, AFFINE)
    field = nib.Nifti1Image(b.astype(np.float32), AFFINE)
    corrected = nib.Nifti1Image((y / b.astype(np.float32)).astype(np.float32), AFFINE)
    return acquired, field, corrected


def _residual(img, acquired) -> float:
    op = slice_operator(img, acquired, 2, 1.0, "gaussian")
    y = np.asarray(acquired.dataobj, np.float64)
    return float(np.linalg.norm(op(np.asarray(img.dataobj, np.float64)) - y) / np.linalg.norm(y))


@pytest.mark.parametrize("damping", [0.0, 0.1, "auto"])
def test_no_field_damped_result_is_kept_and_exact_one_is_exact(damping: float | str):
    acquired, _, _ = _images()  # random slices: "auto" finds much of them to be noise
    sr, _, resid, _ = dc_cubic_super_resolve(acquired, 2, 1.0, 0.25, "gaussian", damping)
    damped = damping != 0
    res = restore_acquired(sr, acquired, 2, 1.0, profile="gaussian", damped=damped)
    # nothing left to do without a field: the method's own result, residual and all
    np.testing.assert_allclose(np.asarray(res.image.dataobj), np.asarray(sr.dataobj), atol=1e-5)
    assert res.residual == pytest.approx(resid, rel=1e-3, abs=1e-6)
    assert (res.residual > 1e-3) == damped


def test_damped_residual_is_carried_over_to_the_acquired_slices():
    """With a field, the damped result keeps its residual (times the field) against the
    acquired slices; an exact final projection would undo the damping."""
    acquired, field, corrected = _images()
    sr, _, resid, _ = dc_cubic_super_resolve(corrected, 2, 1.0, 0.25, "gaussian", 0.1)
    kept = restore_acquired(sr, acquired, 2, 1.0, bias=field, profile="gaussian", damped=True)
    assert kept.residual == pytest.approx(resid, rel=0.1)
    assert kept.residual == pytest.approx(_residual(kept.image, acquired), rel=1e-3)
    # the result is the method's times the field, up to the field's variation across a slice
    x = np.asarray(kept.image.dataobj, np.float64)
    x_field = np.asarray(sr.dataobj, np.float64) * np.asarray(kept.bias.dataobj, np.float64)
    assert np.abs(x - x_field).max() < 0.02 * np.abs(x_field).max()
    undone = restore_acquired(sr, acquired, 2, 1.0, bias=field, profile="gaussian")
    assert undone.residual < 1e-6 < kept.residual
    exact = dc_cubic_super_resolve(corrected, 2, 1.0, 0.25, "gaussian", 0.0)[0]
    exact_back = restore_acquired(exact, acquired, 2, 1.0, bias=field, profile="gaussian")
    # undoing the damping gives the exact method's result (up to the field's variation)
    np.testing.assert_allclose(
        np.asarray(undone.image.dataobj), np.asarray(exact_back.image.dataobj), rtol=0.01
    )
