"""QC report building blocks: world-oriented views, no-reference metrics, outliers, sidecars."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bida_app.reports import metrics
from bida_app.reports.collect import find_derivatives, key_fields, read_status
from bida_app.reports.group import flag_outliers
from bida_app.reports.views import (
    canonical,
    choose_view,
    sample_tile,
    slice_tile,
    through_planes,
    world_through_axis,
)


def _stored(data_ras: np.ndarray, codes: tuple[str, str, str], zooms=(0.2, 0.2, 0.2)):
    """An image holding RAS data ``data_ras`` stored in voxel order ``codes``."""
    ornt = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(("R", "A", "S")), nib.orientations.axcodes2ornt(codes)
    )
    affine = np.diag([*zooms, 1.0])
    data = nib.orientations.apply_orientation(data_ras, ornt)
    return nib.Nifti1Image(
        data.astype(np.float32),
        affine @ nib.orientations.inv_ornt_aff(ornt, data_ras.shape),
    )


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("L", "I", "P"), ("S", "R", "A")])
def test_views_are_upright_in_world_orientation(codes):
    ras = np.zeros((12, 16, 10), np.float32)
    ras[6, 12, 8] = 1.0  # anterior (A high) and superior (S high) marker
    data, _ = canonical(_stored(ras, codes))
    tile = slice_tile(data, "sagittal", 6)  # rows = I->S, columns = P->A
    assert tile.shape == (10, 16)
    assert np.unravel_index(np.argmax(tile), tile.shape) == (8, 12)
    axial = slice_tile(data, "axial", 8)  # rows = P->A, columns = L->R
    assert np.unravel_index(np.argmax(axial), axial.shape) == (12, 6)


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("L", "I", "P")])
def test_input_is_shown_on_the_sr_grid_as_thick_slices(codes):
    rng = np.random.default_rng(0)
    lr_ras = rng.uniform(1, 2, (6, 4, 5)).astype(np.float32)  # A-P has 4 slices of 1 mm
    lr = _stored(lr_ras, codes, zooms=(0.2, 1.0, 0.2))
    # SR grid: 0.2 mm A-P voxels, 5 per thick slice, covering the same slab
    sr_affine = canonical(lr)[1].copy()
    sr_affine[1, 1], sr_affine[1, 3] = 0.2, sr_affine[1, 3] - 0.4
    assert world_through_axis(lr) == 1
    assert through_planes(1) == ("sagittal", "axial")
    for x in range(6):
        tile = sample_tile(lr, sr_affine, (6, 20, 5), "sagittal", x)  # (z, y)
        expected = np.repeat(lr_ras[x], 5, axis=0).T  # each thick slice spans 5 thin ones
        np.testing.assert_array_equal(tile, expected)


def test_sample_tile_marks_outside_the_input_as_nan():
    lr = nib.Nifti1Image(np.ones((4, 2, 4), np.float32), np.diag([1.0, 2.0, 1.0, 1.0]))
    tile = sample_tile(lr, np.eye(4), (4, 8, 4), "sagittal", 0)
    assert np.isnan(tile[:, 4:]).all() and (tile[:, :3] == 1).all()


def test_choose_view_stays_inside_the_head():
    mask = np.zeros((30, 40, 20), bool)
    mask[5:25, 10:35, 4:16] = True
    view = choose_view(mask, "sagittal", n_slices=5)
    assert len(view.indices) == 5 and all(5 <= i < 25 for i in view.indices)
    assert list(view.indices) == sorted(view.indices)
    rows, cols = view.crop
    assert rows.start <= 4 and rows.stop >= 16 and cols.start <= 10 and cols.stop >= 35


def test_sharpness_ranks_blurred_through_plane_lower(tmp_path):
    from scipy import ndimage

    from bida_app.demo.phantom import make_rat_phantom

    ph = make_rat_phantom((40, 60, 24), 0.2, seed=5)
    truth = ph.image.astype(np.float32)
    blurred = ndimage.gaussian_filter1d(truth, 2.0, axis=1)
    mask = metrics.head_mask(truth, np.full(3, 0.2))
    sharp_truth = metrics.sharpness(truth, mask, np.full(3, 0.2), 1)
    sharp_blur = metrics.sharpness(blurred, mask, np.full(3, 0.2), 1)
    assert sharp_blur < 0.8 * sharp_truth
    # blurring in-plane instead makes the through-plane relatively sharper
    blurred_in = ndimage.gaussian_filter1d(truth, 2.0, axis=0)
    assert metrics.sharpness(blurred_in, mask, np.full(3, 0.2), 1) > sharp_truth


def test_jitter_detects_slice_wise_intensity_changes():
    from bida_app.demo.phantom import make_rat_phantom

    truth = make_rat_phantom((40, 60, 24), 0.2, seed=6).image.astype(np.float32)
    mask = metrics.head_mask(truth, np.full(3, 0.2))
    gains = 1 + 0.1 * np.random.default_rng(0).standard_normal(truth.shape[0])
    jittered = truth * gains[:, None, None].astype(np.float32)
    q0 = metrics.image_quality(truth, np.full(3, 0.2), 1, mask)
    q1 = metrics.image_quality(jittered, np.full(3, 0.2), 1, mask)
    assert q1["jitter_inplane"] > 2.5 * q0["jitter_inplane"]
    assert q1["jitter_through"] == pytest.approx(q0["jitter_through"], rel=0.2)


def test_snr_follows_the_noise_level():
    rng = np.random.default_rng(2)
    base = np.zeros((40, 40, 30))
    base[10:30, 10:30, 8:22] = 50.0
    mask = base > 0
    snrs = []
    for sigma in (1.0, 4.0):
        noise = rng.normal(0, sigma, (2, *base.shape))
        noisy = np.abs(base + noise[0] + 1j * noise[1])
        snrs.append(metrics.snr(noisy, mask))
    assert snrs[0] == pytest.approx(4 * snrs[1], rel=0.15)
    assert snrs[0] == pytest.approx(50.0, rel=0.1)


def test_outliers_are_flagged_within_each_method():
    table = pd.DataFrame(
        {
            "subject": [f"{i:02d}" for i in range(12)],
            "method": ["cubic"] * 6 + ["bida"] * 6,
            "snr": [10, 10.5, 9.8, 10.2, 9.9, 30.0, 20, 21, 19.5, 20.5, 20.2, 19.8],
            "residual": [0.1] * 12,
        }
    )
    flagged = flag_outliers(table)
    assert flagged["snr_outlier"].tolist() == [False] * 5 + [True] + [False] * 6
    assert flagged.loc[5, "outliers"] == "snr"
    assert not flagged["residual_outlier"].any()
    assert (flagged.loc[:4, "outliers"] == "").all()


def test_sidecar_fields_tolerate_missing_and_nested_keys(tmp_path):
    anat = tmp_path / "sub-07" / "ses-a" / "anat"
    anat.mkdir(parents=True)
    name = "sub-07_ses-a_acq-cor_run-2_desc-bida_T2w"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), anat / f"{name}.nii.gz")
    (anat / f"{name}.json").write_text(
        json.dumps(
            {
                "Method": "bida",
                "Models": {"sagittal": {"SHA256": "a" * 64}, "axial": {"SHA256": "b" * 64}},
                "DataConsistencyResidual": {"Final": 0.012, "Initial": 0.5},
                "Timings": {"n4": 1.5, "bida": 20.0},
                "InputVoxelSize": [0.1, 1.0, 0.1],
                "OutputVoxelSize": [0.1, 0.2, 0.1],
                "ThroughPlaneAxis": {"Voxel": 1, "World": "AP"},
            }
        )
    )
    nib.save(
        nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)),
        anat / "sub-07_ses-a_acq-cor_run-2_desc-bidaStd_T2w.nii.gz",
    )
    (found,) = find_derivatives(tmp_path)
    assert found.entities == {"subject": "07", "session": "a", "acquisition": "cor", "run": "2"}
    assert found.std is not None and found.prefix == "sub-07_ses-a_acq-cor_run-2"
    fields = dict(key_fields(found.meta, found.desc))
    assert fields["Factor"] == "5×"
    assert fields["Data-consistency residual"] == "0.012"
    assert fields["Runtime"] == "21.5 s"
    assert "aaaaaaaaaaaa" in fields["Model SHA256"] and "bbbbbbbbbbbb" in fields["Model SHA256"]
    assert "Slice thickness" not in fields  # missing keys are left out, not errors


def test_run_statuses_from_several_files_are_merged(tmp_path):
    logs = tmp_path / "logs"
    (logs / "job2").mkdir(parents=True)
    (logs / "bida_status.json").write_text(
        json.dumps([{"run": "sub-01/anat/sub-01_T2w.nii.gz", "status": "done"}])
    )
    (logs / "job2" / "bida_status.json").write_text(
        json.dumps([{"run": "sub-02/anat/sub-02_T2w.nii.gz", "status": "failed", "message": "x"}])
    )
    (logs / "bida_status_broken.json").write_text("{not json")
    entries = read_status(tmp_path)
    assert [(e["run"].split("/")[0], e["status"], e["subject"]) for e in entries] == [
        ("sub-01", "done", "01"),
        ("sub-02", "failed", "02"),
    ]
