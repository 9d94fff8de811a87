"""Intensity standardization on the model grid and its inverse."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bida_app.errors import BadDataError
from bida_app.preprocess.standardize import (
    MODEL_GRID,
    StandardizeParams,
    destandardize,
    grid_affine,
    pad_widths,
    standardize,
)


def volume(shape, seed=0, low=10.0, high=1000.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


@pytest.mark.parametrize(
    ("shape", "grid"),
    [((30, 26, 12), (36, 36, 16)), ((40, 20, 15), (36, 36, 16)), ((21, 17, 9), None)],
    ids=["pad", "pad-and-crop", "no-grid"],
)
def test_round_trip_within_1e5_relative(shape, grid, caplog):
    x = volume(shape)
    with caplog.at_level(logging.WARNING):
        std, params = standardize(x, grid)
    assert std.dtype == np.float32
    assert std.shape == (params.grid if grid is None else tuple(grid))
    assert std.min() >= -1.0 and std.max() <= 1.0
    lo, hi = np.percentile(x, [1, 99])
    assert (params.clip_low, params.clip_high) == pytest.approx((lo, hi))
    back = destandardize(std, params)
    assert back.shape == x.shape
    kept = np.ones(shape, bool)
    for axis, (before, after) in enumerate(params.crops):
        index = [slice(None)] * 3
        index[axis] = slice(before, shape[axis] - after)
        crop_mask = np.zeros(shape, bool)
        crop_mask[tuple(index)] = True
        kept &= crop_mask
    # unclipped voxels come back within 1e-5 relative, clipped ones at the clip values
    np.testing.assert_allclose(back[kept], np.clip(x, lo, hi)[kept], rtol=1e-5)
    # cropped-away voxels come back as background (the lower clip value)
    np.testing.assert_allclose(back[~kept], lo, rtol=1e-6)
    assert ("cropping" in caplog.text) == any(c != (0, 0) for c in params.crops)


def test_padding_is_centred_and_minus_one():
    x = volume((10, 7, 4))
    std, params = standardize(x, (14, 12, 4), lower=0, upper=100)
    assert params.pads == ((2, 2), (2, 3), (0, 0))
    np.testing.assert_array_equal(std[:2], -1.0)
    np.testing.assert_array_equal(std[-2:], -1.0)
    np.testing.assert_array_equal(std[:, -3:], -1.0)
    assert std[2:12, 2:9].min() == -1.0 and std[2:12, 2:9].max() == 1.0


def test_crop_warns_and_brain_crop_follows_the_object(caplog):
    x = np.full((20, 20, 60), 1.0)
    x[6:14, 6:14, 40:56] = 100.0  # "brain" off-centre along the long axis
    with caplog.at_level(logging.WARNING):
        std_c, p_c = standardize(x, (20, 20, 24), crop="centre")
    assert "axis 2 has 60 voxels" in caplog.text
    assert p_c.pads[2] == (-18, -18)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        std_b, p_b = standardize(x, (20, 20, 24), crop="brain")
    assert "centre of mass" in caplog.text
    bright = std_b > 0.5
    assert bright.sum() == 8 * 8 * 16  # the whole object survives the brain crop
    assert (std_c > 0.5).sum() < 8 * 8 * 16  # but not the centre crop
    back = destandardize(std_b, p_b)
    np.testing.assert_allclose(back, x, rtol=1e-5)


def test_mask_sets_the_percentiles():
    x = volume((12, 12, 8))
    mask = np.zeros(x.shape, bool)
    mask[3:9, 3:9, 2:6] = True
    _, params = standardize(x, None, mask=mask, lower=5, upper=95)
    assert params.masked
    assert (params.clip_low, params.clip_high) == pytest.approx(
        tuple(np.percentile(x[mask], [5, 95]))
    )


def test_params_json_round_trip():
    _, params = standardize(volume((30, 8, 40)), (36, 36, 16), crop="brain")
    text = json.dumps(params.to_dict())
    again = StandardizeParams.from_dict(json.loads(text))
    assert again == params
    assert json.loads(text)["crops"] == [list(c) for c in params.crops]


def test_axis_lengths_unpads_a_super_resolved_axis():
    """LR standardized with the through-plane axis left alone, SR result padded to the grid."""
    lr = volume((30, 6, 14), seed=3)
    _, params = standardize(lr, (36, None, 16), lower=0, upper=100)
    hr = volume((30, 24, 14), seed=4, low=params.clip_low, high=params.clip_high)
    hr_grid = (36, 32, 16)
    # what the SR step produces: the HR volume, standardized and padded to the grid
    hr_params = params.with_axis(1, 24, pad_widths(24, hr_grid[1]))
    assert hr_params.grid == hr_grid
    std_hr = np.full(hr_grid, -1.0, np.float32)
    (b0, _), (b1, _), (b2, _) = hr_params.pads
    std_hr[b0 : b0 + 30, b1 : b1 + 24, b2 : b2 + 14] = (hr - params.clip_low) * params.scale - 1
    back = destandardize(std_hr, params, axis_lengths={1: 24})
    assert back.shape == hr.shape
    np.testing.assert_allclose(back, hr, rtol=1e-5)
    np.testing.assert_array_equal(back, destandardize(std_hr, hr_params))
    with pytest.raises(ValueError, match="axis_lengths"):
        destandardize(std_hr, params)


def test_non_finite_and_constant_inputs():
    x = volume((8, 8, 8))
    x[0, 0, 0] = np.nan
    x[1, 0, 0] = np.inf
    std, params = standardize(x, None)
    assert params.n_nonfinite == 2
    assert std[0, 0, 0] == -1.0 and std[1, 0, 0] == -1.0
    with pytest.raises(BadDataError, match="constant"):
        standardize(np.full((4, 4, 4), 7.0), None)


def test_grid_affine_keeps_world_positions():
    affine = np.array([[0.2, 0, 0, -3.0], [0, 0, 0.2, 1.0], [0, -0.2, 0, 2.0], [0, 0, 0, 1]])
    pads = ((3, 4), (-2, -1), (0, 0))
    grid_aff = grid_affine(affine, pads)
    ijk = np.array([5.0, 7.0, 1.0, 1.0])
    grid_ijk = ijk + np.array([3, -2, 0, 0])
    np.testing.assert_allclose(grid_aff @ grid_ijk, affine @ ijk)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 300),
    target=st.integers(1, 300),
    centre=st.one_of(st.none(), st.floats(-50, 350)),
)
def test_pad_widths_properties(n, target, centre):
    before, after = pad_widths(n, target, centre)
    assert before + n + after == target
    if n <= target:
        assert 0 <= before <= after <= before + 1
    else:
        assert before <= 0 and after <= 0  # crop only, window inside the axis
        start = -before
        if centre is None:
            assert 0 <= (-after) - start <= 1  # centred, odd voxel cropped after
        else:
            # the window is centred on the requested index, unless clamped at an end
            mid = start + (target - 1) / 2
            assert abs(mid - centre) <= 0.5 or start in (0, n - target)


@pytest.mark.realdata
def test_real_scans_round_trip_on_the_input_grid(shared_data):
    """to_ras -> standardize -> destandardize -> from_ras gives the input back (clipped)."""
    import nibabel as nib

    from bida_app.preprocess import from_ras, to_ras

    for name, crop in [("mouse_dsurqe-200um_T2w", "centre"), ("rat_coronal-1mm_T2w", "brain")]:
        img = nib.load(shared_data / f"{name}.nii.gz")
        ras, info = to_ras(img)
        std, params = standardize(ras.get_fdata(), MODEL_GRID, crop=crop)
        assert std.shape == (144, 144, 64)
        back_ras = destandardize(std, params)
        back = from_ras(nib.Nifti1Image(back_ras, ras.affine, header=ras.header), info)
        assert np.array_equal(back.affine, img.affine)
        original = np.clip(img.get_fdata(), params.clip_low, params.clip_high)
        kept = from_ras(
            nib.Nifti1Image(
                destandardize(np.ones_like(std), params).astype(np.float32), ras.affine
            ),
            info,
        ).get_fdata() == np.float32(params.clip_high)
        expected = np.prod([min(n, g) / n for n, g in zip(ras.shape, MODEL_GRID, strict=True)])
        assert kept.mean() == pytest.approx(expected)
        scale = params.clip_high - params.clip_low
        np.testing.assert_allclose(back.get_fdata()[kept], original[kept], atol=1e-5 * scale)
