"""BiDA's data term: the slices as dccubic explains them, so noise is not put back."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bida_app.methods.bida import bida_super_resolve_image
from bida_app.methods.dccubic import explained_slices, projection_is_damped
from bida_app.physics import SliceGeometry, SliceOperator


@pytest.fixture(scope="module")
def noisy_rat(thick_rat) -> nib.Nifti1Image:
    y = np.asarray(thick_rat.dataobj, np.float64)
    sigma = 0.03 * np.percentile(y, 99)
    y = y + np.random.default_rng(0).normal(0, sigma, y.shape)
    return nib.Nifti1Image(y.astype(np.float32), thick_rat.affine)


def _bida(img: nib.Nifti1Image, models: dict, damping: float | str):
    return bida_super_resolve_image(
        img, through_axis=1, thickness_mm=1.0, target_mm=0.2, steps=2, device="cpu",
        models=models, progress=False, slice_profile="gaussian", dc_damping=damping,
    )  # fmt: skip


def _a_out(img: nib.Nifti1Image) -> SliceOperator:
    return SliceOperator.from_geometry(SliceGeometry.from_lr(1, img.shape[1], 1.0, 1.0, 0.2))


def test_exact_data_term_is_the_slices(noisy_rat, random_models):
    res = _bida(noisy_rat, random_models, 0.0)
    assert res.sidecar["DataTerm"] == "the slices given"
    assert res.sidecar["DataConsistencyResidual"] < 1e-5
    assert "NoiseLevelEstimate" not in res.sidecar


def test_auto_data_term_holds_the_noise_back(noisy_rat, random_models):
    """The output re-degrades exactly to the explained slices; against the noisy slices given
    it keeps the noise held back, and the sidecar says so."""
    res = _bida(noisy_rat, random_models, "auto")
    meta = res.sidecar
    assert meta["DataTerm"].startswith("the slices as dccubic explains them")
    assert meta["DataConsistencyDamping"] == "auto"
    assert 0.005 < meta["NoiseLevelEstimate"] < 0.1 and 0 < meta["CorrectionKept"] < 1
    y_hat = np.asarray(explained_slices(noisy_rat, 1, 1.0, 0.2)[0].dataobj, np.float64)
    y = np.asarray(noisy_rat.dataobj, np.float64)
    x = np.asarray(res.image.dataobj, np.float64)
    op = _a_out(noisy_rat)
    assert op.relative_residual(x, y_hat) < 1e-5
    assert meta["DataConsistencyResidual"] == pytest.approx(op.relative_residual(x, y), rel=1e-3)
    assert meta["DataConsistencyResidual"] > 1e-3


def test_explained_slices_are_the_slices_for_the_exact_projection(noisy_rat):
    same, run = explained_slices(noisy_rat, 1, 1.0, 0.2, damping=0)
    assert same is noisy_rat and run is None
    smooth, run = explained_slices(noisy_rat, 1, 1.0, 0.2, damping="auto")
    assert run is not None and run.shrinkage is not None
    y, y_hat = (np.asarray(i.dataobj, np.float64) for i in (noisy_rat, smooth))
    # y − ŷ = (I − W) r: what was held back is small against the slices, but not nothing
    assert 1e-3 < np.linalg.norm(y - y_hat) / np.linalg.norm(y) < 0.1


def test_which_methods_keep_a_damped_residual():
    assert projection_is_damped("dccubic", "auto") and projection_is_damped("bida", 0.1)
    assert projection_is_damped("bida-self", "auto")
    assert not projection_is_damped("bida", 0) and not projection_is_damped("cubic", "auto")
