"""End-to-end participant level with the default method (data-consistent cubic), and every bad
input's exit code."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bida_app.cli.main import main
from bida_app.demo.dataset import DemoRun, make_demo_dataset
from bida_app.errors import ExitCode
from bida_app.physics import SliceGeometry

ROOT = Path(__file__).resolve().parents[1]
SMALL = (40, 60, 20)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "bids", shape=SMALL)


@pytest.fixture()
def one_subject(tmp_path) -> Path:
    runs = (DemoRun("01", None, 1.0, 1.0, ("R", "A", "S"), 7),)
    return make_demo_dataset(tmp_path / "bids", shape=SMALL, runs=runs)


@pytest.fixture(scope="module")
def demo_run(demo, tmp_path_factory):
    """Run the participant level once on the demo dataset."""
    before = _tree_digest(demo)
    out = tmp_path_factory.mktemp("out") / "bida"
    code = main([str(demo), str(out), "participant", "-w", str(out.parent / "work")])
    return demo, out, code, before


def test_end_to_end_outputs(demo_run):
    demo, out, code, before = demo_run
    assert code == 0
    produced = sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*_desc-dccubic_T2w.nii.gz")
    )
    assert produced == [
        "sub-01/anat/sub-01_acq-coronal_desc-dccubic_T2w.nii.gz",
        "sub-02/anat/sub-02_acq-coronal_desc-dccubic_T2w.nii.gz",
        "sub-03/ses-1/anat/sub-03_ses-1_acq-coronal_desc-dccubic_T2w.nii.gz",
        "sub-03/ses-2/anat/sub-03_ses-2_acq-coronal_desc-dccubic_T2w.nii.gz",
    ]
    # nothing was written under bids_dir
    assert _tree_digest(demo) == before
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "bida"
    assert desc["GeneratedBy"][0]["Version"] == (ROOT / "version").read_text().strip()
    assert desc["SourceDatasets"]


def test_sidecars(demo_run):
    demo, out, _, _ = demo_run
    for nii in out.rglob("*_desc-dccubic_T2w.nii.gz"):
        meta = json.loads(nii.with_name(nii.name.replace(".nii.gz", ".json")).read_text())
        src = meta["Sources"][0]
        assert src.startswith("bids:raw:") and (demo / src[len("bids:raw:") :]).is_file()
        for key in (
            "Method",
            "MethodParameters",
            "InputVoxelSize",
            "OutputVoxelSize",
            "ThroughPlaneAxis",
            "SliceThickness",
            "Seed",
            "SoftwareVersion",
            "RuntimeSeconds",
            "SkullStripped",
        ):
            assert key in meta, key
        assert meta["Method"] == "dccubic"
        assert meta["ThroughPlaneAxis"]["World"] == "AP"
        img = nib.load(nii)
        assert np.allclose(img.header.get_zooms(), 0.2, atol=1e-5)
        assert np.isclose(sorted(meta["InputVoxelSize"])[-1], meta["SliceSpacing"])


def test_pybids_indexes_derivatives(demo_run):
    from bids import BIDSLayout

    demo, out, _, _ = demo_run
    layout = BIDSLayout(str(demo), derivatives=str(out), validate=False)
    found = layout.get(desc="dccubic", suffix="T2w", extension=".nii.gz", scope="derivatives")
    assert len(found) == 4


def test_slice_centres_keep_world_position(demo_run):
    demo, out, _, _ = demo_run
    for lr_path in demo.rglob("*acq-coronal_T2w.nii.gz"):
        if "derivatives" in lr_path.parts:
            continue
        rel = lr_path.relative_to(demo)
        sr_name = lr_path.name.replace("_T2w.nii.gz", "_desc-dccubic_T2w.nii.gz")
        sr = nib.load(out / rel.parent / sr_name)
        lr = nib.load(lr_path)
        axis = int(np.argmax(lr.header.get_zooms()))
        zooms = lr.header.get_zooms()
        thickness = json.loads(
            lr_path.with_name(lr_path.name.replace(".nii.gz", ".json")).read_text()
        )["SliceThickness"]
        geom = SliceGeometry.from_lr(
            axis, lr.shape[axis], float(zooms[axis]), thickness, float(min(zooms))
        )
        for k, c in enumerate(geom.lr_centres):
            lr_idx = np.zeros(4)
            lr_idx[axis], lr_idx[3] = k, 1
            hr_idx = np.linalg.solve(sr.affine, lr.affine @ lr_idx)
            assert abs(hr_idx[axis] - c) < 1e-4 / 0.2  # 1e-4 mm at 0.2 mm voxels
            # at an inner slice's centre the result looks like that slice (data consistency
            # is checked against A in test_default_output_is_faithful_to_the_acquired_slices;
            # the end slices of the phantom are nearly empty)
            if abs(c - round(c)) < 1e-6 and 0 < k < len(geom.lr_centres) - 1:
                sl_hr = np.take(np.asarray(sr.dataobj), int(round(c)), axis=axis).ravel()
                sl_lr = np.take(np.asarray(lr.dataobj), k, axis=axis).ravel()
                assert np.corrcoef(sl_hr, sl_lr)[0, 1] > 0.9


def _acquired_residual(lr_path: Path, sr_path: Path, profile: str) -> float:
    """``‖A x − y‖ / ‖y‖`` of a derivative against the raw (acquired) slices."""
    from bida_app.preprocess.restore import slice_operator

    lr, sr = nib.load(lr_path), nib.load(sr_path)
    axis = int(np.argmax(lr.header.get_zooms()))
    thickness = json.loads(
        lr_path.with_name(lr_path.name.replace(".nii.gz", ".json")).read_text()
    )["SliceThickness"]
    op = slice_operator(sr, lr, axis, thickness, profile)
    y = np.asarray(lr.dataobj, np.float64)
    return float(np.linalg.norm(op(np.asarray(sr.dataobj, np.float64)) - y) / np.linalg.norm(y))


def test_default_output_is_faithful_to_the_acquired_slices(demo_run):
    """N4 conditions the method, but the main derivative re-degrades to the *acquired* data;
    the bias-corrected result and the field on the output grid are companions."""
    demo, out, _, _ = demo_run
    lr_paths = [p for p in demo.glob("sub-*/**/anat/*acq-coronal_T2w.nii.gz")]
    assert len(lr_paths) == 4
    for lr_path in lr_paths:
        rel = lr_path.relative_to(demo).parent
        stem = lr_path.name.replace("_T2w.nii.gz", "")
        main_img = out / rel / f"{stem}_desc-dccubic_T2w.nii.gz"
        corrected = out / rel / f"{stem}_desc-dccubicBiascorr_T2w.nii.gz"
        field = out / rel / f"{stem}_desc-biasfield_T2w.nii.gz"
        meta = json.loads(
            main_img.with_name(main_img.name.replace(".nii.gz", ".json")).read_text()
        )
        profile = meta["MethodParameters"]["SliceProfile"]
        assert profile == "gaussian"  # the default forward model (README: slice profile)
        # the Wiener-shrunk projection: a small residual (the noise held back), measured
        # against the raw slices
        assert meta["DataConsistencyDamping"] == "auto"
        assert 0 < meta["NoiseLevelEstimate"] < 0.2 and 0 < meta["CorrectionKept"] <= 1
        resid = _acquired_residual(lr_path, main_img, profile)
        assert resid == pytest.approx(meta["DataConsistencyResidual"], rel=1e-3, abs=1e-6)
        assert 1e-5 < resid < 0.02
        assert meta["DataConsistencyReference"].startswith("acquired")
        assert meta["BiasFieldReapplied"] is True
        # the demo's bias field is real: the corrected image is not data-consistent with y
        assert _acquired_residual(lr_path, corrected, profile) > 1e-3
        b = np.asarray(nib.load(field).dataobj)
        assert b.shape == nib.load(main_img).shape and b.min() > 0
        c, x = (np.asarray(nib.load(f).dataobj, np.float64) for f in (corrected, main_img))
        fg = c > 0.2 * c.max()
        # main ≈ corrected × field, up to the (small) final projection
        rel_err = np.abs(x[fg] - c[fg] * b[fg]) / (c[fg] * b[fg])
        assert np.median(rel_err) < 0.05
        companion = json.loads(
            corrected.with_name(corrected.name.replace(".nii.gz", ".json")).read_text()
        )
        assert companion["Sources"] == meta["Sources"]
    # the participant report shows the faithful result and the bias-corrected one
    html = (out / "sub-01.html").read_text()
    for kind in ("sagittalDccubic_", "sagittalDccubicBiascorr_", "sagittalBias_"):
        assert f"sub-01_acq-coronal_desc-{kind}T2w.png" in html, kind


def test_exact_projection_ends_on_the_acquired_slices(demo, tmp_path: Path):
    """``--dc_damping 0``: with N4 on, the main derivative re-degrades exactly to the raw
    slices (float32 rounding), the bias-corrected companion does not."""
    out = tmp_path / "out"
    argv = [str(demo), str(out), "participant", "--participant_label", "01"]
    assert main([*argv, "--dc_damping", "0", "-w", str(tmp_path / "work")]) == 0
    lr_path = next(demo.glob("sub-01/anat/*acq-coronal_T2w.nii.gz"))
    stem = lr_path.name.replace("_T2w.nii.gz", "")
    main_img = out / "sub-01" / "anat" / f"{stem}_desc-dccubic_T2w.nii.gz"
    corrected = main_img.with_name(f"{stem}_desc-dccubicBiascorr_T2w.nii.gz")
    meta = json.loads(main_img.with_name(main_img.name.replace(".nii.gz", ".json")).read_text())
    assert meta["DataConsistencyDamping"] == 0.0 and meta["BiasFieldReapplied"] is True
    assert _acquired_residual(lr_path, main_img, "gaussian") < 1e-5
    assert meta["DataConsistencyResidual"] < 1e-10
    assert _acquired_residual(lr_path, corrected, "gaussian") > 1e-3


def test_rerun_is_noop(demo_run, caplog):
    demo, out, _, _ = demo_run
    before = _tree_digest(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*_T2w.*")}
    with caplog.at_level("INFO", logger="bida"):
        assert main([str(demo), str(out), "participant", "-w", str(out.parent / "work")]) == 0
    assert "exists, skipped" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*_T2w.*")} == mtimes
    assert {k: v for k, v in _tree_digest(out).items() if k.endswith("_T2w.nii.gz")} == {
        k: v for k, v in before.items() if k.endswith("_T2w.nii.gz")
    }


def test_isotropic_runs_skipped_with_message(one_subject, tmp_path, caplog):
    with caplog.at_level("INFO", logger="bida"):
        assert main([str(one_subject), str(tmp_path / "out"), "participant"]) == 0
    assert "sub-01_acq-iso_T2w: isotropic enough" in caplog.text
    assert not list((tmp_path / "out").rglob("*acq-iso*"))


def test_participant_and_session_selection(demo, tmp_path):
    out = tmp_path / "out"
    args = [
        str(demo),
        str(out),
        "participant",
        "--participant-label",
        "sub-03",
        "--session_label",
        "2",
    ]
    assert main(args) == 0
    produced = sorted(p.name for p in out.glob("sub-*/**/*_T2w.nii.gz"))
    assert produced == [
        "sub-03_ses-2_acq-coronal_desc-biasfield_T2w.nii.gz",
        "sub-03_ses-2_acq-coronal_desc-dccubicBiascorr_T2w.nii.gz",
        "sub-03_ses-2_acq-coronal_desc-dccubic_T2w.nii.gz",
    ]


def test_output_under_bids_derivatives_allowed(one_subject):
    before = {k: v for k, v in _tree_digest(one_subject).items()}
    out = one_subject / "derivatives" / "bida"
    assert main([str(one_subject), str(out), "participant"]) == 0
    after = {
        k: v for k, v in _tree_digest(one_subject).items() if not k.startswith("derivatives/bida")
    }
    assert after == before


def test_real_rat_scan_end_to_end(shared_data, tmp_path):
    bids = tmp_path / "rat"
    anat = bids / "sub-rat1" / "anat"
    anat.mkdir(parents=True)
    shutil.copy(shared_data / "rat_coronal-1mm_T2w.nii.gz", anat / "sub-rat1_T2w.nii.gz")
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "rat", "BIDSVersion": "1.9.0"})
    )
    out = tmp_path / "out"
    assert main([str(bids), str(out), "participant", "--target_resolution", "0.2"]) == 0
    sr = nib.load(out / "sub-rat1" / "anat" / "sub-rat1_desc-dccubic_T2w.nii.gz")
    assert sr.shape == (256, 120, 256)
    meta = json.loads((out / "sub-rat1" / "anat" / "sub-rat1_desc-dccubic_T2w.json").read_text())
    assert meta["SliceThicknessSource"] == "assumed equal to spacing"
    assert np.isfinite(np.asarray(sr.dataobj)).all()


# --------------------------------------------------------------------------- bad input
def _err_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_missing_bids_dir(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), str(tmp_path / "out"), "participant"]) == 66
    assert "does not exist" in _err_line(capsys)


def test_not_a_bids_dataset(tmp_path, capsys):
    (tmp_path / "notbids").mkdir()
    code = main([str(tmp_path / "notbids"), str(tmp_path / "out"), "participant"])
    assert code == ExitCode.BIDS_INVALID
    assert "dataset_description.json" in _err_line(capsys)


def test_output_inside_bids_dir_refused(one_subject, capsys):
    before = _tree_digest(one_subject)
    assert main([str(one_subject), str(one_subject / "out"), "participant"]) == 64
    assert "inside the BIDS directory" in _err_line(capsys)
    assert main([str(one_subject), str(one_subject), "participant"]) == 64
    assert _tree_digest(one_subject) == before


def test_unknown_participant(one_subject, tmp_path, capsys):
    code = main(
        [str(one_subject), str(tmp_path / "o"), "participant", "--participant_label", "99"]
    )
    assert code == ExitCode.NO_DATA
    assert "participant(s) not found: 99" in _err_line(capsys)


def test_no_t2w_selected(one_subject, tmp_path, capsys):
    code = main([str(one_subject), str(tmp_path / "o"), "participant", "--session_label", "9"])
    assert code == ExitCode.NO_DATA
    assert "no T2w run selected" in _err_line(capsys)


def _replace_aniso(bids: Path, writer) -> Path:
    path = bids / "sub-01" / "anat" / "sub-01_acq-coronal_T2w.nii.gz"
    writer(path)
    return path


def test_corrupt_nifti(one_subject, tmp_path, capsys):
    path = _replace_aniso(one_subject, lambda p: p.write_bytes(gzip.compress(b"not a nifti" * 40)))
    assert main([str(one_subject), str(tmp_path / "o"), "participant"]) == ExitCode.BAD_DATA
    line = _err_line(capsys)
    assert str(path) in line and "cannot read NIfTI" in line


def test_truncated_nifti(one_subject, tmp_path, capsys):
    def truncate(p: Path) -> None:
        raw = gzip.decompress(p.read_bytes())
        p.write_bytes(gzip.compress(raw[: len(raw) // 2]))

    path = _replace_aniso(one_subject, truncate)
    assert main([str(one_subject), str(tmp_path / "o"), "participant"]) == ExitCode.BAD_DATA
    assert str(path) in _err_line(capsys)


def test_4d_t2w(one_subject, tmp_path, capsys):
    def to4d(p: Path) -> None:
        img = nib.load(p)
        data = np.stack([img.get_fdata()] * 2, axis=-1).astype(np.float32)
        nib.save(nib.Nifti1Image(data, img.affine), p)

    path = _replace_aniso(one_subject, to4d)
    assert main([str(one_subject), str(tmp_path / "o"), "participant"]) == ExitCode.BAD_DATA
    line = _err_line(capsys)
    assert str(path) in line and "expected a 3D image" in line


def test_nan_voxels_warn_and_mask(one_subject, tmp_path, caplog):
    def add_nans(p: Path) -> None:
        img = nib.load(p)
        data = img.get_fdata().astype(np.float32)
        data[3, 2, 4] = np.nan
        data[5, 1, 1] = np.inf
        nib.save(nib.Nifti1Image(data, img.affine), p)

    _replace_aniso(one_subject, add_nans)
    with caplog.at_level("WARNING"):
        assert main([str(one_subject), str(tmp_path / "o"), "participant"]) == 0
    assert "2 non-finite voxels" in caplog.text
    out = next((tmp_path / "o").rglob("*desc-dccubic_T2w.nii.gz"))
    assert np.isfinite(np.asarray(nib.load(out).dataobj)).all()


def test_unwritable_output(one_subject, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([str(one_subject), str(blocker / "out"), "participant"]) == ExitCode.CANT_CREATE
    assert "cannot create or write" in _err_line(capsys)


def test_usage_errors(one_subject, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(one_subject), str(tmp_path / "o"), "participant", "--bogus"])
    assert exc.value.code == 64
    with pytest.raises(SystemExit) as exc:
        main([str(one_subject), str(tmp_path / "o"), "everything"])
    assert exc.value.code == 17


def test_version_from_file():
    res = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout.strip() == f"bida {(ROOT / 'version').read_text().strip()}"


def test_slice_profile_choices_match_the_physics():
    """The participant parser spells the profile kinds out; they must be the physics' ones."""
    from bida_app.cli.parser import build_parser
    from bida_app.config import DEFAULT_SLICE_PROFILE, RunConfig
    from bida_app.physics.profiles import PROFILE_KINDS

    action = next(a for a in build_parser()._actions if a.dest == "slice_profile")
    assert set(action.choices) == set(PROFILE_KINDS)
    assert (
        action.default == DEFAULT_SLICE_PROFILE == RunConfig("b", "o", "participant").slice_profile
    )
    assert DEFAULT_SLICE_PROFILE in PROFILE_KINDS
