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
from bida_app.methods.dccubic import dc_cubic_super_resolve, resolve_damping
from bida_app.physics.simulate import simulate_lr
from bida_app.preprocess.noise import noise_level


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


# --- --dc_damping auto ----------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.01, 0.03, 0.06])
def test_noise_level_reads_gaussian_noise_on_a_smooth_image(sigma: float):
    yy, xx = np.mgrid[0:96, 0:80] / 40.0
    smooth = 100.0 + 20.0 * np.sin(yy) * np.cos(xx)  # slowly varying anatomy stand-in
    vol = np.repeat(smooth[:, None, :], 6, axis=1)
    noisy = vol + np.random.default_rng(1).normal(0, sigma * np.percentile(vol, 99), vol.shape)
    assert noise_level(noisy, 1) == pytest.approx(sigma, rel=0.1)
    assert noise_level(vol, 1) < 0.002  # smooth and noise-free
    with pytest.raises(ValueError, match="too small"):
        noise_level(np.ones((4, 1, 4)), 0)


def test_auto_damping_keeps_the_default_on_clean_scans_and_grows_with_noise(hr):
    kw = {"thickness_mm": 1.0, "spacing_mm": 1.0, "axis": "AP", "profile": "gaussian"}
    lams = []
    for noise in (0.0, 0.02, 0.04):
        lr, _ = simulate_lr(hr, noise=noise, **kw)
        lam, level = resolve_damping("auto", np.asarray(lr.dataobj), 1)
        assert level is not None and lam >= DEFAULT_DC_DAMPING
        lams.append(lam)
    assert lams[0] == DEFAULT_DC_DAMPING < lams[1] < lams[2]
    assert resolve_damping(0.0, np.zeros((2, 2, 2)), 0) == (0.0, None)
    for bad in (-0.1, "often"):
        with pytest.raises(ValueError, match="damping"):
            resolve_damping(bad, np.zeros((2, 2, 2)), 0)


def test_auto_damping_in_a_participant_run(tmp_path):
    """``--dc_damping auto`` reaches the sidecar: the damping used and the noise level read."""
    import json

    from bida_app.cli.main import main
    from bida_app.demo.dataset import make_demo_dataset

    bids = make_demo_dataset(tmp_path / "bids", shape=(40, 60, 20))
    out = tmp_path / "out"
    argv = [str(bids), str(out), "participant", "--participant_label", "01"]
    assert main([*argv, "--dc_damping", "auto", "-w", str(tmp_path / "work")]) == 0
    (sidecar,) = out.glob("sub-01/anat/*_desc-dccubic_T2w.json")
    meta = json.loads(sidecar.read_text())
    assert meta["NoiseLevelEstimate"] > 0
    assert meta["DataConsistencyDamping"] >= DEFAULT_DC_DAMPING
    assert meta["MethodParameters"]["DampingMode"].startswith("auto")
    with pytest.raises(SystemExit) as usage:
        main([*argv, "--dc_damping", "-1", "-w", str(tmp_path / "w2")])
    assert usage.value.code == 64
