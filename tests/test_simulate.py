"""``bida simulate``: LR data equal A applied to HR; slice centres sit where the header says."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bida_app.cli.simulate import main
from bida_app.config import SIMULATION_TBW
from bida_app.errors import ExitCode
from bida_app.physics import SliceOperator, make_profile
from bida_app.physics.simulate import simulate_lr

WORLD = {"LR": 0, "AP": 1, "SI": 2}


def _oblique_sar_affine(hr: float) -> np.ndarray:
    """Voxel axes stored S-A-R (like the DSURQE mouse file), tilted by 8 degrees."""
    c, s = np.cos(np.radians(8)), np.sin(np.radians(8))
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    perm = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]])  # voxel (i, j, k) -> world (k, j, i)
    aff = np.eye(4)
    aff[:3, :3] = rot @ perm * hr
    aff[:3, 3] = [-1.3, 2.1, 0.7]
    return aff


def _hr_image(shape=(14, 22, 18), hr=0.2) -> nib.Nifti1Image:
    rng = np.random.default_rng(0)
    data = rng.random(shape).astype(np.float32)
    return nib.Nifti1Image(data, _oblique_sar_affine(hr))


def _reference_lr(data: np.ndarray, axis: int, centres, hr: float, prof) -> np.ndarray:
    """Brute-force forward model: profile sampled 400 times per HR voxel, unit row sums."""
    n = data.shape[axis]
    sub = (np.arange(400) + 0.5) / 400 - 0.5
    pos = np.arange(n)[:, None] + sub
    w = np.stack([prof((pos - c) * hr).mean(axis=1) for c in centres])
    w /= w.sum(axis=1, keepdims=True)
    return np.moveaxis(np.tensordot(w, data.astype(np.float64), axes=([1], [axis])), 0, axis)


def _check_centres(hr_img, lr_img, axis: int, spacing: float) -> np.ndarray:
    """World positions of LR slice centres agree with the HR grid, centred, at ``spacing``."""
    n_hr, n_lr, hr = hr_img.shape[axis], lr_img.shape[axis], 0.2
    assert n_lr == int(np.floor(n_hr * hr / spacing + 1e-6))
    expected = (n_hr - 1) / 2 + (np.arange(n_lr) - (n_lr - 1) / 2) * spacing / hr
    for k, c in enumerate(expected):
        lr_vox = np.array([1.0, 2.0, 3.0, 1.0])
        lr_vox[axis] = k
        hr_vox = lr_vox.copy()
        hr_vox[axis] = c
        np.testing.assert_allclose(lr_img.affine @ lr_vox, hr_img.affine @ hr_vox, atol=1e-4)
    zooms = np.sqrt((lr_img.affine[:3, :3] ** 2).sum(axis=0))
    assert zooms[axis] == pytest.approx(spacing, rel=1e-6)
    return expected


@pytest.mark.parametrize("world_axis", ["LR", "AP", "SI"])
@pytest.mark.parametrize(
    ("factor", "ratio", "kind"),
    [(2.5, 1.0, "slr"), (5.0, 1.0, "gaussian"), (2.0, 0.6, "boxcar"), (3.0, 1.5, "slr")],
)
def test_simulate_lr_matches_forward_model(world_axis, factor, ratio, kind):
    hr_img = _hr_image()
    spacing, thickness = 0.2 * factor, 0.2 * factor * ratio
    lr_img, meta = simulate_lr(
        hr_img, thickness_mm=thickness, spacing_mm=spacing, axis=world_axis, profile=kind
    )
    axis = 2 - WORLD[world_axis]  # S-A-R storage
    assert meta["ThroughPlaneVoxelAxis"] == axis
    assert nib.aff2axcodes(lr_img.affine) == nib.aff2axcodes(hr_img.affine)
    centres = _check_centres(hr_img, lr_img, axis, spacing)
    np.testing.assert_allclose(meta["SliceCentresHRIndex"], centres, atol=1e-6)
    ref = _reference_lr(
        hr_img.get_fdata(), axis, centres, 0.2, make_profile(kind, thickness, tbw=SIMULATION_TBW)
    )
    np.testing.assert_allclose(lr_img.get_fdata(), ref, atol=2e-3)
    assert meta["SliceThickness"] == thickness and meta["SliceSpacing"] == spacing
    assert meta["SliceProfile"] == kind and (meta["TBW"] == SIMULATION_TBW) == (kind == "slr")


def test_cli_file_round_trip(tmp_path):
    hr_img = _hr_image()
    src, out = tmp_path / "hr.nii.gz", tmp_path / "lr" / "sub-01_T2w.nii.gz"
    nib.save(hr_img, src)
    argv = [str(src), str(out), "--thickness", "0.5", "--spacing", "0.6", "--axis", "ap"]
    assert main([*argv, "--profile", "slr", "--tbw", "8"]) == 0
    lr_img = nib.load(out)
    meta = json.loads(out.with_name("sub-01_T2w.json").read_text())
    assert meta["TBW"] == 8.0 and meta["SliceGap"] == pytest.approx(0.1)
    assert meta["Sources"] == [str(src)]
    _check_centres(hr_img, lr_img, 1, 0.6)
    # A rebuilt from the two files' headers reproduces the written LR data
    op = SliceOperator.from_affines(
        hr_img.affine, 22, lr_img.affine, lr_img.shape[1], 1, "slr", thickness_mm=0.5, tbw=8
    )
    np.testing.assert_allclose(lr_img.get_fdata(), op(hr_img.get_fdata()), rtol=1e-5, atol=1e-6)
    assert lr_img.get_data_dtype() == np.float32
    assert lr_img.header.get_dim_info()[2] == 1


@pytest.mark.realdata
@pytest.mark.parametrize("thickness", [0.5, 1.0])
def test_mouse_sar_file_along_ap(shared_data, tmp_path, thickness):
    """The DSURQE mouse file is stored S-A-R: --axis AP must act on voxel axis 1."""
    src = shared_data / "mouse_dsurqe-200um_T2w.nii.gz"
    out = tmp_path / "mouse_lr.nii.gz"
    argv = [str(src), str(out), "--thickness", str(thickness), "--axis", "AP"]
    assert main([*argv, "--profile", "slr"]) == 0
    hr_img, lr_img = nib.load(src), nib.load(out)
    assert nib.aff2axcodes(lr_img.affine) == ("S", "A", "R")
    n_lr = int(np.floor(67 * 0.2 / thickness + 1e-6))
    assert lr_img.shape == (41, n_lr, 58)
    np.testing.assert_allclose(lr_img.header.get_zooms(), (0.2, thickness, 0.2), rtol=1e-6)
    _check_centres(hr_img, lr_img, 1, thickness)
    op = SliceOperator.from_affines(
        hr_img.affine, 67, lr_img.affine, n_lr, 1, "slr", tbw=SIMULATION_TBW
    )
    hr = hr_img.get_fdata()
    np.testing.assert_allclose(lr_img.get_fdata(), op(hr), rtol=1e-5, atol=1e-5 * hr.max())
    # the A-P direction is the one that was thickened: world y advances by `thickness` per slice
    step = lr_img.affine[:3, 1]
    np.testing.assert_allclose(step, [0, thickness, 0], atol=1e-6)


def test_cli_bad_inputs(tmp_path, capsys):
    hr = tmp_path / "hr.nii.gz"
    nib.save(_hr_image(), hr)
    base = ["--thickness", "0.5", "--axis", "AP"]
    assert main([str(tmp_path / "none.nii.gz"), str(tmp_path / "o.nii.gz"), *base]) == 66
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not a nifti at all")
    assert main([str(junk), str(tmp_path / "o.nii.gz"), *base]) == 65
    four_d = tmp_path / "4d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.float32), np.eye(4)), four_d)
    assert main([str(four_d), str(tmp_path / "o.nii.gz"), *base]) == 65
    assert main([str(hr), str(hr), *base]) == 64  # never overwrite the input
    assert main([str(hr), str(tmp_path / "o.nii.gz"), "--thickness", "0.5", "--axis", "XY"]) == 64
    assert main([str(hr), str(tmp_path / "o.nii.gz"), "--thickness", "0.1", "--axis", "AP"]) == 64
    assert main([str(hr), str(tmp_path / "o.txt"), *base]) == 64
    err = capsys.readouterr().err
    assert "none.nii.gz: no such file" in err and "4d.nii.gz" in err and "finer than" in err
    assert not (tmp_path / "o.nii.gz").exists()


def _bids_tree(root: Path) -> None:
    root.mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "tiny", "BIDSVersion": "1.9.0"})
    )
    iso = root / "sub-01" / "anat" / "sub-01_T2w.nii.gz"
    iso.parent.mkdir(parents=True)
    nib.save(_hr_image(), iso)
    iso.with_name("sub-01_T2w.json").write_text(
        json.dumps({"RepetitionTime": 2.5, "SliceThickness": 0.2})
    )
    thick = root / "sub-02" / "anat" / "sub-02_acq-thick_T2w.nii.gz"
    thick.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.ones((8, 6, 8), np.float32), np.diag([0.2, 1.0, 0.2, 1])), thick)


def test_cli_bids_dataset(tmp_path):
    bids, out = tmp_path / "bids", tmp_path / "lr"
    _bids_tree(bids)
    before = {p: p.stat().st_mtime_ns for p in bids.rglob("*")}
    args = ["--thickness", "1.0", "--axis", "SI", "--profile", "gaussian"]
    assert main([str(bids), str(out), *args]) == 0
    assert {p: p.stat().st_mtime_ns for p in bids.rglob("*")} == before  # input untouched
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        "dataset_description.json",
        "sub-01/anat/sub-01_T2w.json",
        "sub-01/anat/sub-01_T2w.nii.gz",
    ]  # the anisotropic run is skipped
    meta = json.loads((out / "sub-01/anat/sub-01_T2w.json").read_text())
    assert meta["RepetitionTime"] == 2.5  # source metadata kept ...
    assert meta["SliceThickness"] == 1.0  # ... and updated
    assert meta["Sources"] == ["bids:raw:sub-01/anat/sub-01_T2w.nii.gz"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Name"] == "bida simulate"
    assert desc["DatasetLinks"]["raw"] == bids.resolve().as_uri()
    lr = nib.load(out / "sub-01/anat/sub-01_T2w.nii.gz")
    assert lr.shape == (int(np.floor(14 * 0.2 / 1.0 + 1e-6)), 22, 18)  # SI is voxel axis 0


def test_cli_bids_refusals(tmp_path):
    bids = tmp_path / "bids"
    _bids_tree(bids)
    args = ["--thickness", "1.0", "--axis", "SI"]
    assert main([str(bids), str(bids / "derivatives" / "lr"), *args]) == ExitCode.USAGE
    only_thick = [*args, "--participant-label", "02"]
    assert main([str(bids), str(tmp_path / "out"), *only_thick]) == ExitCode.NO_DATA
    not_bids = tmp_path / "plain"
    not_bids.mkdir()
    assert main([str(not_bids), str(tmp_path / "out2"), *args]) == ExitCode.BIDS_INVALID
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def _block_image(seed: int = 0) -> nib.Nifti1Image:
    rng = np.random.default_rng(seed)
    data = np.zeros((12, 40, 10), np.float32)
    data[2:10, 5:35, 2:8] = 100 + 10 * rng.random((8, 30, 6))
    return nib.Nifti1Image(data, np.diag([0.2, 0.2, 0.2, 1.0]))


def test_rician_noise_is_seeded_recorded_and_rician():
    hr = _block_image()
    kw = {"thickness_mm": 1.0, "spacing_mm": 1.0, "axis": "AP", "profile": "gaussian"}
    clean, meta0 = simulate_lr(hr, **kw)
    noisy, meta = simulate_lr(hr, noise=0.05, seed=3, **kw)
    again, _ = simulate_lr(hr, noise=0.05, seed=3, **kw)
    other, _ = simulate_lr(hr, noise=0.05, seed=4, **kw)
    c, n = np.asarray(clean.dataobj, float), np.asarray(noisy.dataobj, float)
    assert meta0["NoiseLevel"] == 0.0 and meta0["RicianNoiseSigma"] == 0.0
    sigma = 0.05 * np.percentile(np.asarray(hr.dataobj), 99)
    assert meta["NoiseLevel"] == 0.05 and meta["RicianNoiseSigma"] == pytest.approx(sigma)
    np.testing.assert_array_equal(n, np.asarray(again.dataobj))
    assert not np.array_equal(n, np.asarray(other.dataobj))
    # Rayleigh (mean sigma * sqrt(pi/2)) where there is no signal, ~Gaussian where it is high
    background = c == 0
    assert n[background].mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.1)
    tissue = c > 50
    assert (n - c)[tissue].std() == pytest.approx(sigma, rel=0.1)
    assert n.min() >= 0


def test_cli_noise_option(tmp_path):
    src = tmp_path / "hr.nii.gz"
    nib.save(_block_image(), src)
    out = tmp_path / "lr.nii.gz"
    argv = [str(src), str(out), "--thickness", "1", "--axis", "AP", "--noise", "0.02"]
    assert main([*argv, "--seed", "7"]) == 0
    meta = json.loads((tmp_path / "lr.json").read_text())
    assert meta["NoiseLevel"] == 0.02 and meta["RicianNoiseSigma"] > 0
    assert main([*argv[:-1], "-0.1"]) == ExitCode.USAGE
