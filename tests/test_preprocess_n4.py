"""N4 bias-field correction, the rough head mask and the ANTs <-> nibabel conversion."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bida_app.errors import BadDataError
from bida_app.preprocess.n4 import from_ants, n4_correct, rough_head_mask, to_ants


def make_phantom(
    shape: tuple[int, int, int] = (48, 40, 32),
    zooms: tuple[float, float, float] = (0.2, 0.2, 0.2),
    seed: int = 0,
) -> tuple[nib.Nifti1Image, np.ndarray, np.ndarray, np.ndarray]:
    """Two-compartment ellipsoid times a smooth bias field, with Rician noise.

    Returns the image, the true bias field, the ellipsoid (head) mask and an eroded mask of
    the homogeneous core compartment.
    """
    rng = np.random.default_rng(seed)
    axes = [(np.arange(n) - (n - 1) / 2) * z for n, z in zip(shape, zooms, strict=True)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    radii = [0.42 * n * zz for n, zz in zip(shape, zooms, strict=True)]
    r2 = (x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2
    head, core = r2 <= 1.0, r2 <= 0.3
    clean = np.where(head, 100.0, 0.0)
    clean[core] = 60.0
    u, v, w = x / radii[0], y / radii[1], z / radii[2]
    bias = np.exp(0.45 * u - 0.25 * v**2 + 0.2 * w + 0.15 * u * w)
    sigma = 2.0
    noisy = np.hypot(clean * bias + rng.normal(0, sigma, shape), rng.normal(0, sigma, shape))
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * zz for n, zz in zip(shape, zooms, strict=True)]
    img = nib.Nifti1Image(noisy.astype(np.float32), affine)
    homogeneous = ndimage.binary_erosion(core, iterations=1)
    return img, bias, head, homogeneous


def cv(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


@pytest.mark.parametrize(
    ("shape", "zooms"),
    [((48, 40, 32), (0.2, 0.2, 0.2)), ((48, 10, 32), (0.2, 1.0, 0.2))],
    ids=["iso-0.2mm", "aniso-0.2x1.0x0.2mm"],
)
def test_n4_reduces_cv_of_known_bias(shape, zooms):
    img, bias, head, core = make_phantom(shape, zooms)
    result = n4_correct(img)
    before = cv(img.get_fdata()[core])
    after = cv(result.corrected.get_fdata()[core])
    assert after < 0.5 * before, (before, after)
    # the estimated field follows the true one (up to a global scale)
    est = np.log(result.bias.get_fdata()[head])
    true = np.log(bias[head])
    assert np.corrcoef(est, true)[0, 1] > 0.9
    # geometry and header untouched
    assert np.array_equal(result.corrected.affine, img.affine)
    assert np.array_equal(result.bias.affine, img.affine)
    assert result.corrected.shape == img.shape
    assert result.corrected.get_data_dtype() == np.float32
    assert result.params["mask"] == "rough_head_mask"
    assert len(result.params["bspline_mesh"]) == 3


def test_n4_given_mask_and_corrected_is_input_over_bias():
    img, _, head, _ = make_phantom((32, 28, 24))
    mask = nib.Nifti1Image(head.astype(np.uint8), img.affine)
    result = n4_correct(img, mask=mask, shrink_factor=2, convergence={"iters": [20], "tol": 0})
    assert result.params["mask"] == "given"
    assert result.params["mask_voxels"] == int(head.sum())
    np.testing.assert_allclose(
        result.corrected.get_fdata() * result.bias.get_fdata(), img.get_fdata(), rtol=1e-5
    )
    # bias normalised to geometric mean 1 inside the mask
    assert abs(np.mean(np.log(result.bias.get_fdata()[head]))) < 1e-4


def test_n4_keeps_oblique_affine_exactly():
    img, _, _, _ = make_phantom((24, 20, 16))
    theta = 0.3
    rot = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([-0.2, 0.2, 0.2])
    affine[:3, 3] = [3.3, -1.7, 0.9]
    oblique = nib.Nifti1Image(img.get_fdata(dtype=np.float32), affine)
    result = n4_correct(oblique, convergence={"iters": [10], "tol": 0})
    assert np.array_equal(result.corrected.affine, oblique.affine)


def test_n4_rejects_bad_masks():
    img, _, _, _ = make_phantom((16, 16, 12))
    with pytest.raises(BadDataError, match="mask shape"):
        n4_correct(img, mask=nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), img.affine))
    with pytest.raises(BadDataError, match="no positive voxels"):
        n4_correct(img, mask=nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine))


def test_rough_head_mask_covers_phantom():
    img, _, head, _ = make_phantom()
    mask = rough_head_mask(img).get_fdata() > 0
    assert mask[head].mean() > 0.97
    # it may overshoot the head boundary by the smoothing width, not more
    near = ndimage.binary_dilation(head, iterations=2)
    assert (mask & ~near).sum() < 0.01 * head.sum()
    assert ndimage.label(mask)[1] == 1


def test_ants_conversion_preserves_world_geometry():
    ants = pytest.importorskip("ants")
    affine = np.array(
        [[0.0, 0.0, 0.2, -5.7], [0.0, 0.2, 0.0, -7.9], [-0.2, 0.0, 0.0, 2.7], [0, 0, 0, 1]]
    )
    data = np.random.default_rng(1).random((5, 6, 7)).astype(np.float32)
    img = nib.Nifti1Image(data, affine)
    aimg = to_ants(img)
    np.testing.assert_array_equal(aimg.numpy(), data)
    lps = np.diag([-1.0, -1.0, 1.0])
    for ijk in [(0, 0, 0), (4, 5, 6), (1, 3, 2)]:
        world_ras = affine @ np.r_[ijk, 1.0]
        point = ants.transform_index_to_physical_point(aimg, list(ijk))
        np.testing.assert_allclose(point, lps @ world_ras[:3], atol=1e-9)
    back = from_ants(aimg)
    np.testing.assert_allclose(back.affine, affine, atol=1e-12)
    np.testing.assert_array_equal(back.get_fdata(), data)
