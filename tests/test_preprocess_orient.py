"""Header validation and exact reorientation to RAS and back."""

from __future__ import annotations

import itertools
import json
import logging

import nibabel as nib
import numpy as np
import pytest

from bida_app.errors import BadDataError, ExitCode
from bida_app.preprocess.orient import (
    OrientationInfo,
    from_ras,
    through_plane_axis,
    to_ras,
    voxel_sizes,
)


def signed_permutations():
    """All 48 axis permutations with flips, as 3x3 matrices."""
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            mat = np.zeros((3, 3))
            for col, (row, sign) in enumerate(zip(perm, signs, strict=True)):
                mat[row, col] = sign
            yield mat


def world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return (affine @ np.c_[ijk, np.ones(len(ijk))].T)[:3].T


@pytest.mark.parametrize("index", range(48))
def test_round_trip_exact_for_all_orientations(index):
    mat = list(signed_permutations())[index]
    zooms = np.array([0.11, 0.25, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = mat @ np.diag(zooms)
    affine[:3, 3] = [1.5, -2.25, 3.125]
    rng = np.random.default_rng(index)
    data = rng.integers(0, 1000, size=(5, 4, 3)).astype(np.int16)
    img = nib.Nifti1Image(data, affine)
    img.header.set_dim_info(slice=2)

    ras, info = to_ras(img, name="sub-01_T2w.nii.gz")
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    assert np.allclose(np.diag(np.abs(ras.affine[:3, :3])) > 0, True)
    # every voxel keeps its value at the same world point
    ijk = np.argwhere(np.ones(data.shape, bool))
    src_world = world(affine, ijk)
    ras_ijk = np.rint(np.linalg.solve(ras.affine, np.c_[src_world, np.ones(len(ijk))].T)[:3].T)
    ras_data = np.asanyarray(ras.dataobj)
    np.testing.assert_array_equal(ras_data[tuple(ras_ijk.astype(int).T)], data[tuple(ijk.T)])
    # the slice dimension moves with its axis
    assert ras.header.get_dim_info()[2] == int(np.argmax(np.abs(mat[:, 2])))
    # voxel sizes follow the axes
    np.testing.assert_allclose(sorted(voxel_sizes(ras)), sorted(zooms))

    back = from_ras(ras, info)
    assert np.array_equal(back.affine, img.affine)
    assert back.get_data_dtype() == data.dtype
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), data)
    assert back.header.get_dim_info()[2] == 2


def test_mouse_sar_file_round_trip(shared_data, tmp_path):
    path = shared_data / "mouse_dsurqe-200um_T2w.nii.gz"
    img = nib.load(path)
    ras, info = to_ras(img)
    assert info.input_codes == "SAR"
    assert info.source == str(path)
    assert ras.shape == (img.shape[2], img.shape[1], img.shape[0])
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S")
    # the voxel centre of the middle voxel is at the same world point
    mid = (np.array(img.shape) - 1) / 2
    np.testing.assert_allclose(
        world(ras.affine, mid[::-1][None]), world(img.affine, mid[None]), atol=1e-9
    )
    # the info survives JSON, and the inverse is exact
    info2 = OrientationInfo.from_dict(json.loads(json.dumps(info.to_dict())))
    out = tmp_path / "ras.nii.gz"
    nib.save(ras, out)
    back = from_ras(nib.load(out), info2)
    assert np.array_equal(back.affine, img.affine)
    np.testing.assert_array_equal(back.get_fdata(), img.get_fdata())
    assert back.header["sform_code"] == img.header["sform_code"]


def test_from_ras_on_a_different_grid_keeps_world_positions():
    affine = np.array(
        [[0, 0, 0.2, -5.7], [0, -1.0, 0, 7.9], [0.2, 0, 0, -2.7], [0, 0, 0, 1]], dtype=float
    )
    img = nib.Nifti1Image(np.zeros((6, 5, 7), np.float32), affine)
    ras, info = to_ras(img)
    # a super-resolved grid: the A axis (axis 1 in RAS) at 0.2 mm instead of 1.0 mm
    hr_affine = ras.affine @ np.diag([1.0, 0.2, 1.0, 1.0])
    hr = nib.Nifti1Image(np.random.default_rng(0).random((7, 25, 6)), hr_affine)
    back = from_ras(hr, info)
    assert back.shape == (6, 25, 7)
    assert "".join(nib.aff2axcodes(back.affine)) == info.input_codes
    ijk = np.argwhere(np.ones(back.shape, bool))
    hr_ijk = np.rint(
        np.linalg.solve(hr_affine, np.c_[world(back.affine, ijk), np.ones(len(ijk))].T)[:3].T
    ).astype(int)
    np.testing.assert_array_equal(hr.get_fdata()[tuple(hr_ijk.T)], back.get_fdata()[tuple(ijk.T)])


def test_trailing_singleton_dimension_round_trip():
    img = nib.Nifti1Image(np.arange(24.0).reshape(2, 3, 4, 1), np.diag([-0.2, 0.2, 0.2, 1]))
    ras, info = to_ras(img)
    assert ras.shape == (2, 3, 4)
    back = from_ras(ras, info)
    assert back.shape == (2, 3, 4, 1)
    np.testing.assert_array_equal(back.get_fdata(), img.get_fdata())


def test_qform_sform_disagreement_prefers_sform(caplog):
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.diag([0.2, 0.2, 0.2, 1]))
    img.header.set_qform(np.diag([2.0, 2.0, 2.0, 1]), code=1)
    img.header.set_sform(np.diag([0.2, 0.2, 0.2, 1]), code=2)
    with caplog.at_level(logging.WARNING):
        ras, _ = to_ras(img, name="bad.nii.gz")
    assert "qform and sform disagree" in caplog.text
    np.testing.assert_allclose(ras.affine, np.diag([0.2, 0.2, 0.2, 1]))
    np.testing.assert_allclose(ras.header.get_qform(), ras.header.get_sform())


def test_missing_forms_and_human_sized_voxels_warn(caplog):
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), None)
    img.header.set_zooms((2.0, 2.0, 2.0))
    with caplog.at_level(logging.WARNING):
        to_ras(img, name="noforms.nii.gz")
    assert "neither sform nor qform" in caplog.text
    assert "human-sized" in caplog.text


def test_non_finite_affine_is_bad_data_naming_the_file(tmp_path):
    path = tmp_path / "sub-01_T2w.nii.gz"
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    nib.save(img, path)
    loaded = nib.load(path)
    sform = np.eye(4)
    sform[0, 0] = np.nan
    loaded.header.set_sform(sform, code=2)
    loaded = nib.Nifti1Image(loaded.dataobj, None, header=loaded.header)
    loaded.set_filename(str(path))
    with pytest.raises(BadDataError, match="sub-01_T2w.nii.gz") as err:
        to_ras(loaded)
    assert err.value.code == ExitCode.BAD_DATA


def test_singular_affine_and_4d_are_bad_data():
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    img.header["srow_y"] = [0.0, 0.0, 0.0, 0.0]
    img = nib.Nifti1Image(img.dataobj, None, header=img.header)
    with pytest.raises(BadDataError, match="singular"):
        to_ras(img, name="x")
    with pytest.raises(BadDataError, match="3D volume"):
        to_ras(nib.Nifti1Image(np.zeros((4, 4, 4, 2)), np.eye(4)), name="x")


def test_through_plane_axis_and_voxel_sizes():
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    angle = 0.4
    tilt = np.array(
        [[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]
    )
    affine = np.eye(4)
    affine[:3, :3] = tilt @ rot @ np.diag([0.1125, 1.0, 0.1125])
    np.testing.assert_allclose(voxel_sizes(affine), [0.1125, 1.0, 0.1125])
    assert through_plane_axis(affine) == 1
    assert through_plane_axis(np.diag([0.2, 0.2, 0.5, 1])) == 2
    with pytest.raises(ValueError, match="no clearly largest"):
        through_plane_axis(np.diag([0.2, 0.2, 0.2, 1]))
