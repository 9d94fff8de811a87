"""BiDA's warm start: sampling from the noised data-consistent cubic estimate."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bida_app.methods.bida import bida_super_resolve_image, warm_start_volume
from bida_app.methods.dccubic import dc_cubic_super_resolve
from bida_app.physics import SliceGeometry, SliceOperator


def test_warm_start_volume_is_padded_and_consistent() -> None:
    rng = np.random.default_rng(0)
    std = rng.uniform(-1, 1, (6, 5, 7)).astype(np.float32)
    geom = SliceGeometry.from_lr(1, 5, 1.0, 1.0, 0.25)
    before = 3
    op = SliceOperator(geom.n_hr + 5, geom.lr_centres + before, 0.25, _gauss(1.0), 1)
    init = warm_start_volume(std, geom, op, before)
    assert init.shape == (6, geom.n_hr + 5, 7) and init.dtype == np.float32
    assert op.relative_residual(init, std) < 1e-5
    assert np.allclose(init[:, 0], -1.0, atol=0.05)  # padding stays background


def _gauss(fwhm: float):
    from bida_app.physics import make_profile

    return make_profile("gaussian", fwhm)


def _bida(img: nib.Nifti1Image, models: dict, t_start: float):
    return bida_super_resolve_image(
        img, through_axis=1, thickness_mm=1.0, target_mm=0.2, steps=2, t_start=t_start,
        device="cpu", models=models, progress=False, slice_profile="gaussian",
        dc_damping=0.0,  # the slices themselves as the data term: the output ends on them
    )  # fmt: skip


def test_late_start_keeps_a_random_prior_near_the_baseline(thick_rat, random_models) -> None:
    """An untrained prior started late barely moves dccubic; from noise it wanders off."""
    base = np.asarray(dc_cubic_super_resolve(thick_rat, 1, 1.0, 0.2, "gaussian", 0.0)[0].dataobj)
    warm = _bida(thick_rat, random_models, 0.05)
    cold = _bida(thick_rat, random_models, 1.0)
    d_warm = np.abs(np.asarray(warm.image.dataobj) - base).mean()
    d_cold = np.abs(np.asarray(cold.image.dataobj) - base).mean()
    assert d_warm < 0.25 * d_cold
    params = warm.sidecar["MethodParameters"]
    assert params["StartTime"] == 0.05 and params["WarmStart"] == "data-consistent cubic"
    assert cold.sidecar["MethodParameters"]["WarmStart"].startswith("none")
    assert warm.sidecar["DataConsistencyResidual"] < 1e-4


def test_a_warm_start_without_an_estimate_is_refused(random_models) -> None:
    from bida_app.diffusion.bida import super_resolve
    from bida_app.physics import make_profile

    lr = np.full((8, 4, 8), -1.0, np.float32)
    lr[2:6, :, 2:6] = 0.5
    op = SliceOperator(16, np.arange(4) * 4 + 1.5, 0.25, make_profile("gaussian", 1.0), 1)
    with pytest.raises(ValueError, match="x_init"):
        super_resolve(lr, op, random_models, steps=1, t_start=0.5, progress=False)
