"""In-plane B-spline resampling and general grid resampling."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bida_app.preprocess.orient import voxel_sizes
from bida_app.preprocess.resample import (
    inplane_grid,
    resample_axis,
    resample_inplane,
    resample_to_grid,
)


def centre(affine: np.ndarray, shape) -> np.ndarray:
    return (affine @ np.r_[(np.asarray(shape[:3]) - 1) / 2.0, 1.0])[:3]


def oblique_affine(zooms, angle=0.35, origin=(-3.1, 2.2, 0.7)) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.array(
        [[1, 0, 0], [0, c, -s], [0, s, c]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(zooms)
    affine[:3, 3] = origin
    return affine


@pytest.mark.parametrize(
    ("shape", "zooms", "through", "voxel"),
    [
        ((256, 24, 256), (0.1125, 1.0, 0.1125), 1, 0.2),
        ((37, 41, 9), (0.13, 0.09, 0.8), 2, 0.2),
        ((7, 30, 33), (1.2, 0.3, 0.31), 0, 0.2),
    ],
)
def test_inplane_grid_keeps_fov_centre_and_extent(shape, zooms, through, voxel):
    affine = oblique_affine(zooms)
    new_affine, new_shape = inplane_grid(affine, shape, through, voxel)
    np.testing.assert_allclose(centre(new_affine, new_shape), centre(affine, shape), atol=1e-9)
    new_zooms = voxel_sizes(new_affine)
    for axis in range(3):
        if axis == through:
            assert new_shape[axis] == shape[axis]
            assert new_zooms[axis] == pytest.approx(zooms[axis])
        else:
            assert new_zooms[axis] == pytest.approx(voxel)
            extent, new_extent = shape[axis] * zooms[axis], new_shape[axis] * voxel
            assert abs(new_extent - extent) <= voxel / 2 + 1e-9
    # directions are unchanged
    np.testing.assert_allclose(
        new_affine[:3, :3] / new_zooms, affine[:3, :3] / np.asarray(zooms), atol=1e-12
    )


def test_resample_inplane_is_accurate_in_world_space():
    """A smooth function sampled on the input grid is reproduced on the output grid."""
    shape, zooms = (64, 6, 60), (0.1125, 1.0, 0.1125)
    affine = oblique_affine(zooms)

    def f(points):
        return np.sin(points[..., 0] / 2.0) + np.cos(points[..., 2] / 1.7) + 0.3 * points[..., 1]

    def sample(aff, shp):
        ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shp], indexing="ij"), -1)
        return f(ijk @ aff[:3, :3].T + aff[:3, 3])

    img = nib.Nifti1Image(sample(affine, shape).astype(np.float32), affine)
    out = resample_inplane(img, through_axis=1, voxel_mm=0.2)
    assert out.shape == (36, 6, 34)
    assert out.get_data_dtype() == np.float32
    expected = sample(out.affine, out.shape)
    inner = (slice(2, -2), slice(None), slice(2, -2))
    np.testing.assert_allclose(out.get_fdata()[inner], expected[inner], atol=2e-3)
    np.testing.assert_allclose(centre(out.affine, out.shape), centre(affine, shape), atol=1e-9)


def test_resample_inplane_leaves_slices_independent():
    rng = np.random.default_rng(0)
    data = rng.random((20, 5, 18)).astype(np.float32)
    affine = np.diag([0.15, 1.0, 0.15, 1.0])
    base = resample_inplane(nib.Nifti1Image(data, affine), 1, 0.2).get_fdata()
    bumped = data.copy()
    bumped[:, 3] += 1.0
    out = resample_inplane(nib.Nifti1Image(bumped, affine), 1, 0.2).get_fdata()
    changed = np.abs(out - base).max(axis=(0, 2)) > 1e-6
    np.testing.assert_array_equal(changed, [False, False, False, True, False])


def test_resample_to_grid_identity_and_pass_through_axes_are_exact():
    rng = np.random.default_rng(1)
    data = rng.random((9, 7, 5))
    affine = oblique_affine((0.2, 0.2, 1.0))
    np.testing.assert_array_equal(resample_to_grid(data, affine, affine, data.shape), data)
    dst, shape = inplane_grid(affine, data.shape, 2, 0.1)
    up = resample_to_grid(data, affine, dst, shape)
    # resampling only x and y: a field constant in x and y keeps its per-slice values exactly
    const = np.broadcast_to(rng.random(5), data.shape)
    up_const = resample_to_grid(const, affine, dst, shape)
    np.testing.assert_allclose(up_const, np.broadcast_to(const[0, 0], shape), rtol=1e-12)
    assert up.shape == (18, 14, 5)


def test_resample_to_grid_general_affine_reproduces_linear_fields():
    shape = (40, 42, 38)
    src = np.diag([0.2, 0.2, 0.2, 1.0])
    dst = oblique_affine((0.25, 0.25, 0.25), angle=0.2, origin=(2.6, 2.5, 2.4))
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    grad = np.array([0.7, -1.3, 0.4])
    data = (ijk @ src[:3, :3].T + src[:3, 3]) @ grad
    out_shape = (10, 10, 10)
    out = resample_to_grid(data, src, dst, out_shape, order=3)
    out_ijk = np.stack(np.meshgrid(*[np.arange(n) for n in out_shape], indexing="ij"), -1)
    expected = (out_ijk @ dst[:3, :3].T + dst[:3, 3]) @ grad
    # away from the FOV edge, cubic B-splines reproduce linear fields
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_resample_axis_constant_mode_fills_cval():
    data = np.ones((3, 4))
    out = resample_axis(data, 1, np.array([-5.0, 1.0, 9.0]), order=3, mode="constant", cval=-1)
    np.testing.assert_allclose(out[:, [0, 2]], -1.0)
    np.testing.assert_allclose(out[:, 1], 1.0)
