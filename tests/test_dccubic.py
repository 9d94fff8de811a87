"""dccubic's regularised projections on a phantom: what the default and λ are for.

Phantom numbers, not real-data results (those are in docs/evaluation.md). The default
("auto": a Wiener gain for the scan's own noise level) is the exact projection on noise-free
Gaussian slices and beats it on noisy ones; a fixed Tikhonov λ gives a little away on clean
Gaussian slices and recovers much of the loss of a Gaussian A on sharp (SLR) slices.
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
from bida_app.preprocess.noise import noise_level


@pytest.fixture(scope="module")
def hr() -> nib.Nifti1Image:
    ph = make_rat_phantom((60, 80, 40), seed=1, noise=0.0, bias_strength=0.0)
    return nib.Nifti1Image(ph.clean.astype(np.float32), ph.affine)


def _gain(
    hr: nib.Nifti1Image, profile: str, noise: float, damping: float | str = DEFAULT_DC_DAMPING
) -> tuple[float, float]:
    """PSNR of dccubic with ``damping`` minus the exact one, and its residual."""
    lr, _ = simulate_lr(
        hr, thickness_mm=1.0, spacing_mm=1.0, axis="AP", profile=profile, noise=noise
    )
    truth = np.asarray(hr.dataobj, np.float64)
    scores, resid = [], 0.0
    for d in (0.0, damping):
        sr, _, resid, _ = dc_cubic_super_resolve(lr, 1, 1.0, 0.2, DEFAULT_SLICE_PROFILE, d)
        scores.append(psnr(to_hr_grid(sr, hr), truth))
    return scores[1] - scores[0], resid


def test_defaults_are_a_gaussian_projection_shrunk_for_the_scans_noise():
    assert DEFAULT_SLICE_PROFILE == "gaussian" and DEFAULT_DC_DAMPING == "auto"


def test_auto_is_the_exact_projection_on_clean_gaussian_slices(hr):
    gain, resid = _gain(hr, "gaussian", 0.0)
    assert abs(gain) < 0.005  # what the noise estimate mistakes for noise is negligible
    assert resid < 0.002
    damped, damped_resid = _gain(hr, "gaussian", 0.0, 0.1)
    assert damped < gain and damped_resid > resid  # a fixed λ gives something away


def test_auto_beats_the_exact_projection_and_a_fixed_damping_on_noisy_slices(hr):
    gains = [_gain(hr, "gaussian", noise)[0] for noise in (0.02, 0.04)]
    assert 0.0 < gains[0] < gains[1]  # the more noise, the more it holds back
    assert gains[1] > _gain(hr, "gaussian", 0.04, 0.1)[0]


def test_a_fixed_damping_pays_off_on_sharp_slices(hr):
    gain, resid = _gain(hr, "slr", 0.0, 0.1)
    assert gain > 0.1  # a Gaussian A over-sharpens sharp slices; the damping holds it back
    assert resid > _gain(hr, "gaussian", 0.0, 0.1)[1]  # what a Gaussian A cannot explain shows


# --- the noise estimate behind "auto" ------------------------------------------------------


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


def test_noise_level_reads_the_flat_patches_between_sharp_edges():
    """Dense small structures with sharp curved edges (piecewise constant): the finest detail
    band fires at every edge, the flattest blocks between them still read the noise alone."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96]
    img = np.full((96, 96), 60.0)
    for _ in range(120):
        cy, cx, r = rng.uniform(0, 96), rng.uniform(0, 96), rng.uniform(2, 6)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(50, 100)
    vol = np.repeat(img[:, None, :], 6, axis=1)
    assert noise_level(vol, 1) < 0.002
    for sigma in (0.01, 0.02):
        noisy = vol + rng.normal(0, sigma * np.percentile(vol, 99), vol.shape)
        assert sigma * 0.9 < noise_level(noisy, 1) < sigma * 1.5  # an upper bound, not far off


def test_noise_level_tracks_the_noise_of_the_phantom(hr):
    kw = {"thickness_mm": 1.0, "spacing_mm": 1.0, "axis": "AP", "profile": "gaussian"}
    assert noise_level(np.asarray(simulate_lr(hr, **kw)[0].dataobj), 1) < 0.006
    hr_peak = np.percentile(np.asarray(hr.dataobj), 99)
    for noise in (0.02, 0.04):
        y = np.asarray(simulate_lr(hr, noise=noise, **kw)[0].dataobj)
        true = noise * hr_peak / np.percentile(y, 99)
        assert true * 0.9 < noise_level(y, 1) < true * 1.5


def test_a_fixed_damping_in_a_participant_run(tmp_path):
    """``--dc_damping 0.1`` reaches the sidecar (the default's "auto" is checked with the demo
    run in test_cli_participant); a negative value is a usage error."""
    import json

    from bida_app.cli.main import main
    from bida_app.demo.dataset import make_demo_dataset

    bids = make_demo_dataset(tmp_path / "bids", shape=(40, 60, 20))
    out = tmp_path / "out"
    argv = [str(bids), str(out), "participant", "--participant_label", "01"]
    assert main([*argv, "--dc_damping", "0.1", "-w", str(tmp_path / "work")]) == 0
    (sidecar,) = out.glob("sub-01/anat/*_desc-dccubic_T2w.json")
    meta = json.loads(sidecar.read_text())
    assert meta["DataConsistencyDamping"] == 0.1
    assert meta["MethodParameters"]["DampingMode"] == "given"
    assert "NoiseLevelEstimate" not in meta and "CorrectionKept" not in meta
    with pytest.raises(SystemExit) as usage:
        main([*argv, "--dc_damping", "-1", "-w", str(tmp_path / "w2")])
    assert usage.value.code == 64
