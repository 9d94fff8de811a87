"""dccubic's damped projection on a phantom: what the default damping is for.

Phantom numbers, not real-data results (those are in docs/evaluation.md): the damped
Gaussian projection gives almost nothing away when the slices really are Gaussian and
noise-free, and recovers much of the loss of a Gaussian A on sharp (SLR) slices.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bida_app.config import DEFAULT_DC_DAMPING, DEFAULT_SLICE_PROFILE
from bida_app.demo.phantom import make_rat_phantom
from bida_app.evaluation.inputs import to_hr_grid
from bida_app.evaluation.metrics import psnr
from bida_app.methods.dccubic import dc_cubic_super_resolve
from bida_app.physics.simulate import simulate_lr


@pytest.fixture(scope="module")
def hr() -> nib.Nifti1Image:
    ph = make_rat_phantom((60, 80, 40), seed=1, noise=0.0, bias_strength=0.0)
    return nib.Nifti1Image(ph.clean.astype(np.float32), ph.affine)


def _gain(hr: nib.Nifti1Image, profile: str, noise: float) -> tuple[float, float]:
    """PSNR of the default damped dccubic minus the exact one, and its residual."""
    lr, _ = simulate_lr(
        hr, thickness_mm=1.0, spacing_mm=1.0, axis="AP", profile=profile, noise=noise
    )
    truth = np.asarray(hr.dataobj, np.float64)
    scores, resid = [], 0.0
    for damping in (0.0, DEFAULT_DC_DAMPING):
        sr, _, resid = dc_cubic_super_resolve(lr, 1, 1.0, 0.2, DEFAULT_SLICE_PROFILE, damping)
        scores.append(psnr(to_hr_grid(sr, hr), truth))
    return scores[1] - scores[0], resid


def test_defaults_are_a_damped_gaussian_projection():
    assert DEFAULT_SLICE_PROFILE == "gaussian" and DEFAULT_DC_DAMPING > 0


def test_damping_costs_little_on_matched_gaussian_slices(hr):
    gain, resid = _gain(hr, "gaussian", 0.0)
    assert -0.05 < gain < 0.0  # the exact projection is optimal here, by a hair
    assert 1e-4 < resid < 0.01


def test_damping_pays_off_on_noisy_or_sharp_slices(hr):
    assert _gain(hr, "gaussian", 0.02)[0] > 0.0
    gain, resid = _gain(hr, "slr", 0.0)
    assert gain > 0.1  # a Gaussian A over-sharpens sharp slices; the damping holds it back
    assert resid > _gain(hr, "gaussian", 0.0)[1]  # what a Gaussian A cannot explain shows
