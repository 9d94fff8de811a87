"""Nipype participant workflow: caching, plugins, world geometry for every acquisition axis."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bida_app.cli.main import main
from bida_app.demo.dataset import DemoRun, make_demo_dataset
from bida_app.demo.phantom import make_rat_phantom
from bida_app.physics import SliceGeometry, SliceOperator

SMALL = (40, 60, 20)


@pytest.fixture(scope="module")
def two_subjects(tmp_path_factory) -> Path:
    runs = (
        DemoRun("01", None, 1.0, 1.0, ("R", "A", "S"), 3),
        DemoRun("02", None, 1.0, 1.0, ("L", "I", "P"), 4),
    )
    return make_demo_dataset(
        tmp_path_factory.mktemp("wf") / "bids", shape=SMALL, runs=runs, with_isotropic=False
    )


def _outputs(out: Path) -> dict[str, np.ndarray]:
    return {
        p.relative_to(out).as_posix(): np.asarray(nib.load(p).dataobj)
        for p in sorted(out.rglob("*_desc-*_T2w.nii.gz"))
    }


def _node_results(work: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in work.rglob("result_*.pklz")}


def test_rerun_same_workdir_uses_cache(two_subjects, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    args = [str(two_subjects), str(out), "participant", "-w", str(work), "--no_n4"]
    assert main(args) == 0
    first = _node_results(work)
    assert any("cubic" in str(p) for p in first)
    before = _outputs(out)
    # --overwrite forces the workflow to run again: every computing node must come from cache
    assert main([*args, "--overwrite"]) == 0
    second = _node_results(work)
    always = ("ds_t2w", "merge", "report_figures")  # nodes that rewrite into output_dir
    computed = {p for p in first if not any(a in str(p) for a in always)}
    assert computed and all(second[p] == first[p] for p in computed)
    after = _outputs(out)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_multiproc_matches_linear(two_subjects, tmp_path):
    lin, mp = tmp_path / "lin", tmp_path / "mp"
    assert main([str(two_subjects), str(lin), "participant", "--no_n4"]) == 0
    assert (
        main(
            [
                str(two_subjects),
                str(mp),
                "participant",
                "--no_n4",
                "--nprocs",
                "2",
                "--write_graph",
            ]
        )
        == 0
    )
    a, b = _outputs(lin), _outputs(mp)
    assert len(a) == 2 and a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert list((mp / "work").rglob("graph*.svg")) or list((mp / "work").rglob("graph*.dot"))


def test_plugin_args_must_be_json(two_subjects, tmp_path, capsys):
    code = main(
        [
            str(two_subjects),
            str(tmp_path / "o"),
            "participant",
            "--no_n4",
            "--plugin",
            "MultiProc",
            "--plugin_args",
            "{n_procs: 2",
        ]
    )
    assert code == 64
    assert "--plugin_args is not valid JSON" in capsys.readouterr().err


def _write_run(root: Path, axis: int, codes: tuple[str, str, str]) -> Path:
    """A thick-slice acquisition along RAS ``axis`` stored in voxel order ``codes``."""
    ph = make_rat_phantom((40, 40, 40), 0.2, seed=axis)
    geom = SliceGeometry.from_lr(axis, 8, 1.0, 1.0, 0.2)
    lr = SliceOperator.from_geometry(geom)(ph.image.astype(np.float64))
    lr_aff = ph.affine @ np.linalg.inv(geom.hr_affine(np.eye(4)))
    ornt = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(codes)
    )
    data = nib.orientations.apply_orientation(lr, ornt)
    aff = lr_aff @ nib.orientations.inv_ornt_aff(ornt, lr.shape)
    name = {0: "sagittal", 1: "coronal", 2: "axial"}[axis]
    path = root / "sub-01" / "anat" / f"sub-01_acq-{name}_T2w.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.float32), aff), path)
    return path


@pytest.fixture(scope="module")
def three_axes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("axes") / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "axes", "BIDSVersion": "1.9.0"})
    )
    _write_run(root, 0, ("P", "S", "L"))
    _write_run(root, 1, ("R", "A", "S"))
    _write_run(root, 2, ("I", "L", "A"))
    return root


def _slice_centre_errors(bids: Path, out: Path, method: str) -> list[float]:
    errors = []
    for lr_path in sorted(bids.rglob("*_T2w.nii.gz")):
        lr = nib.load(lr_path)
        sr_path = (
            out
            / lr_path.relative_to(bids).parent
            / lr_path.name.replace("_T2w.nii.gz", f"_desc-{method}_T2w.nii.gz")
        )
        sr = nib.load(sr_path)
        axis = int(np.argmax(lr.header.get_zooms()))
        zooms = [float(z) for z in lr.header.get_zooms()]
        geom = SliceGeometry.from_lr(
            axis,
            lr.shape[axis],
            zooms[axis],
            zooms[axis],
            float(np.sqrt((sr.affine[:3, axis] ** 2).sum())),
        )
        assert sr.shape[axis] == geom.n_hr
        for k, c in enumerate(geom.lr_centres):
            lr_idx, hr_idx = np.zeros(4), np.zeros(4)
            lr_idx[axis], lr_idx[3] = k, 1
            hr_idx[axis], hr_idx[3] = c, 1
            errors.append(float(np.linalg.norm(lr.affine @ lr_idx - sr.affine @ hr_idx)))
            if method == "cubic" and abs(c - round(c)) < 1e-6:  # spline through the samples
                sl_hr = np.take(np.asarray(sr.dataobj), int(round(c)), axis=axis)
                sl_lr = np.take(np.asarray(lr.dataobj), k, axis=axis)
                assert np.allclose(sl_hr, sl_lr, atol=1e-4)
    return errors


def test_every_acquisition_axis_lands_in_world_space(three_axes, tmp_path):
    out = tmp_path / "out"
    assert main([str(three_axes), str(out), "participant", "--no_n4", "--method", "cubic"]) == 0
    worlds = sorted(
        json.loads(p.read_text())["ThroughPlaneAxis"]["World"]
        for p in out.rglob("*_desc-cubic_T2w.json")
    )
    assert worlds == ["AP", "LR", "SI"]
    errors = _slice_centre_errors(three_axes, out, "cubic")
    assert len(errors) == 24 and max(errors) < 0.01


# --------------------------------------------------------------------------- BiDA
TINY_GRID = (48, 48, 48)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """Random tiny plane models on a 48³ grid (fast on CPU)."""
    import torch

    from bida_app.models.config import UNetConfig
    from bida_app.models.unet import UNet
    from bida_app.models.weights import plane_slice_shape, save_plane_model

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("weights")
    for plane in ("axial", "coronal", "sagittal"):
        save_plane_model(
            UNet(UNetConfig.preset("tiny")),
            root,
            plane,
            slice_shape=plane_slice_shape(plane, TINY_GRID),
        )
    return root


def _run_bida(bids: Path, out: Path, weights: Path, *options: str) -> int:
    """The participant level with ``--method bida`` on ``weights``, 2 DDIM steps."""
    args = [str(bids), str(out), "participant", "--method", "bida", "--weights", str(weights)]
    return main([*args, "--steps", "2", *options])


def test_bida_every_axis_world_space_and_consistency(three_axes, tiny_weights, tmp_path):
    out = tmp_path / "out"
    options = ["--no_n4", "--target_resolution", "0.2", "--slice_profile", "gaussian"]
    options += ["--dc_damping", "0"]  # the slices themselves as the data term: exact
    assert _run_bida(three_axes, out, tiny_weights, *options) == 0
    errors = _slice_centre_errors(three_axes, out, "bida")
    assert len(errors) == 24 and max(errors) < 0.01
    for sidecar in out.rglob("*_desc-bida_T2w.json"):
        meta = json.loads(sidecar.read_text())
        assert meta["Method"] == "bida"
        assert meta["DataConsistencyResidual"] <= 1e-4
        assert meta["DataConsistencyResidualOutputGrid"] <= 1e-6
        models = meta["MethodParameters"]["Models"]
        assert all(len(m["SHA256"]) == 64 for m in models.values())
    # the output re-degrades to the acquired slices (Gaussian A on the output grid)
    for lr_path in sorted(three_axes.rglob("*_T2w.nii.gz")):
        lr = nib.load(lr_path)
        sr = nib.load(
            out
            / lr_path.relative_to(three_axes).parent
            / lr_path.name.replace("_T2w.nii.gz", "_desc-bida_T2w.nii.gz")
        )
        axis = int(np.argmax(lr.header.get_zooms()))
        geom = SliceGeometry.from_lr(axis, lr.shape[axis], 1.0, 1.0, 0.2)
        y = np.asarray(lr.dataobj, np.float64)
        resid = SliceOperator.from_geometry(geom)(np.asarray(sr.dataobj, np.float64)) - y
        assert np.linalg.norm(resid) / np.linalg.norm(y) < 1e-5


def test_bida_samples_write_uncertainty(two_subjects, tiny_weights, tmp_path):
    out = tmp_path / "out"
    options = ["--n_samples", "2", "--eta", "0.5", "--participant_label", "01"]
    assert _run_bida(two_subjects, out, tiny_weights, *options) == 0
    anat = out / "sub-01" / "anat"
    mean = nib.load(anat / "sub-01_acq-coronal_desc-bida_T2w.nii.gz")
    std = nib.load(anat / "sub-01_acq-coronal_desc-bidaStd_T2w.nii.gz")
    assert std.shape == mean.shape and np.allclose(std.affine, mean.affine)
    assert float(np.asarray(std.dataobj).max()) > 0
    meta = json.loads((anat / "sub-01_acq-coronal_desc-bida_T2w.json").read_text())
    assert meta["MethodParameters"]["NumberOfSamples"] == 2
    assert "n4" in meta["Timings"] and "BiasFieldCorrection" in meta


def test_bida_missing_weights_is_a_clear_failure(two_subjects, tmp_path, capsys):
    options = ["--no_n4", "--participant_label", "01"]
    code = _run_bida(two_subjects, tmp_path / "o", tmp_path / "nowhere", *options)
    assert code == 66
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "axial.json is missing" in err and str(tmp_path / "nowhere") in err
    assert not (tmp_path / "o" / "work").exists() or not list((tmp_path / "o").rglob("crash*"))


def test_bida_slr_profile_and_shrinkage_reach_the_data(two_subjects, tiny_weights, tmp_path):
    """--slice_profile slr: the output re-degrades to the slices under the SLR operator."""
    out = tmp_path / "out"
    options = ["--n_samples", "2", "--eta", "0.5", "--null_shrinkage", "--slice_profile", "slr"]
    options += ["--participant_label", "01", "--no_n4", "--target_resolution", "0.2"]
    options += ["--dc_damping", "0"]  # the slices themselves as the data term: exact
    assert _run_bida(two_subjects, out, tiny_weights, *options) == 0
    anat = out / "sub-01" / "anat"
    meta = json.loads((anat / "sub-01_acq-coronal_desc-bida_T2w.json").read_text())
    assert meta["MethodParameters"]["SliceProfile"] == "slr"
    assert meta["BidaParameters"]["NullSpaceShrinkage"] is True
    lr_path = two_subjects / "sub-01" / "anat" / "sub-01_acq-coronal_T2w.nii.gz"
    lr = nib.load(lr_path)
    sr = nib.load(anat / "sub-01_acq-coronal_desc-bida_T2w.nii.gz")
    axis = int(np.argmax(lr.header.get_zooms()))
    geom = SliceGeometry.from_lr(axis, lr.shape[axis], 1.0, 1.0, 0.2)
    y = np.asarray(lr.dataobj, np.float64)
    x = np.asarray(sr.dataobj, np.float64)
    slr = np.linalg.norm(SliceOperator.from_geometry(geom, "slr")(x) - y) / np.linalg.norm(y)
    gauss = np.linalg.norm(SliceOperator.from_geometry(geom)(x) - y) / np.linalg.norm(y)
    assert slr < 1e-5 < gauss
