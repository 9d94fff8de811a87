"""BiDA on volumes: data consistency, oracle recovery, shapes, seeds, posterior samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bida_app.demo.phantom import make_rat_phantom
from bida_app.diffusion import planes_for_axis, super_resolve, super_resolve_plane
from bida_app.errors import BidaError, ExitCode
from bida_app.models import PLANE_SLICE_AXIS, PLANES, PlaneModel, UNet, UNetConfig
from bida_app.physics import SliceGeometry, SliceOperator

TINY = UNetConfig.preset("tiny")


def _random_models(seed: int = 0) -> dict[str, PlaneModel]:
    """Tiny UNets with every weight perturbed (so time and input both matter)."""
    models = {}
    for i, plane in enumerate(PLANES):
        torch.manual_seed(seed + i)
        net = UNet(TINY)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        models[plane] = PlaneModel(plane, net.eval(), TINY)
    return models


@pytest.fixture(scope="module")
def models() -> dict[str, PlaneModel]:
    return _random_models()


@pytest.fixture(scope="module")
def hr_volume() -> np.ndarray:
    """A standardized phantom in [-1, 1] (background -1) on a small grid."""
    img = make_rat_phantom((32, 40, 24), seed=1).image
    lo, hi = np.percentile(img, [1, 99])
    return np.clip(2 * (img - lo) / (hi - lo) - 1, -1, 1).astype(np.float32)


def _operator_from_hr(axis: int, n_hr: int, factor: float) -> SliceOperator:
    geom = SliceGeometry.from_hr(axis, n_hr, 0.2 * factor, 0.2 * factor, 0.2)
    return SliceOperator.from_geometry(geom)


def _residual(op: SliceOperator, x: np.ndarray, y: np.ndarray) -> float:
    y = y.astype(np.float64)
    return float(np.linalg.norm(op(x.astype(np.float64)) - y) / np.linalg.norm(y))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(4.0 / np.mean((a.astype(np.float64) - b) ** 2)))


class MixtureOracle(nn.Module):
    """The exact flow velocity E[eps − x0 | x_t] for the prior "uniform over these slices".

    It is given every slice of the plane but not which one it is denoising: the data
    consistency has to steer each sample to its own slice.
    """

    def __init__(self, slices: torch.Tensor):
        super().__init__()
        self.register_buffer("slices", slices)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s = self.slices[None]
        d2 = ((x[:, None] - (1 - t.view(-1, 1, 1, 1, 1)) * s) ** 2).flatten(2).sum(-1)
        w = torch.softmax(-d2 / (2 * t.view(-1, 1) ** 2), dim=1)
        x0 = torch.einsum("bn,nchw->bchw", w, self.slices)
        return (x - x0) / t.view(-1, 1, 1, 1)


def _oracle_models(hr: np.ndarray) -> dict[str, PlaneModel]:
    out = {}
    for plane in PLANES:
        stack = np.ascontiguousarray(np.moveaxis(hr, PLANE_SLICE_AXIS[plane], 0))[:, None]
        out[plane] = PlaneModel(plane, MixtureOracle(torch.from_numpy(stack)), TINY)
    return out


def test_planes_for_axis():
    assert planes_for_axis(0) == ("axial", "coronal")
    assert planes_for_axis(1) == ("axial", "sagittal")
    assert planes_for_axis(2) == ("coronal", "sagittal")
    for axis, planes in ((0, "axial coronal"), (1, "axial sagittal"), (2, "coronal sagittal")):
        for plane in planes.split():
            assert PLANE_SLICE_AXIS[plane] != axis  # the plane's slices contain the axis
    with pytest.raises(ValueError):
        planes_for_axis(3)


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("factor", [2.5, 5.0])
def test_data_consistency_random_weights(models, hr_volume, axis, factor):
    """(a) ‖A x̂ − y‖/‖y‖ ≤ 1e-4 whatever the prior."""
    op = _operator_from_hr(axis, hr_volume.shape[axis], factor)
    lr = op(hr_volume)
    res = super_resolve(lr, op, models, steps=4, progress=False)
    assert res.mean.shape == hr_volume.shape and res.mean.dtype == np.float32
    assert res.residual <= 1e-4
    assert _residual(op, res.mean, lr) == pytest.approx(res.residual, rel=1e-3, abs=1e-9)
    # the random prior does fill the null space: not just the least-squares solution
    assert np.abs(res.mean - op.pinv(lr)).max() > 1e-2


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("factor", [2.5, 5.0])
def test_oracle_prior_recovers_volume(hr_volume, axis, factor):
    """(b) With the exact velocity of a prior holding the true slices, BiDA recovers them."""
    op = _operator_from_hr(axis, hr_volume.shape[axis], factor)
    lr = op(hr_volume)
    res = super_resolve(lr, op, _oracle_models(hr_volume), steps=16, progress=False)
    assert _psnr(res.mean, hr_volume) >= 40.0
    assert _psnr(op.pinv(lr), hr_volume) < 30.0  # the data alone do not determine it


def test_oracle_prior_recovers_volume_with_eta(hr_volume):
    op = _operator_from_hr(1, hr_volume.shape[1], 5.0)
    res = super_resolve(
        op(hr_volume), op, _oracle_models(hr_volume), steps=16, eta=1.0, progress=False
    )
    assert _psnr(res.mean, hr_volume) >= 40.0


@pytest.mark.parametrize(
    ("axis", "lr_shape", "factor"),
    [
        (0, (5, 12, 8), 2.5),  # sagittal acquisition: axial + coronal planes
        (1, (12, 5, 8), 2.5),  # coronal acquisition (A-P thick): axial + sagittal
        (2, (12, 16, 3), 5.0),  # axial acquisition (S-I thick): coronal + sagittal
        (2, (41, 53, 7), 2.5),  # odd FOV: every plane needs padding to the UNet multiple
    ],
)
def test_output_shapes(models, axis, lr_shape, factor):
    """(c) HR shape: ``SliceGeometry.from_lr`` samples along the axis, others unchanged."""
    geom = SliceGeometry.from_lr(axis, lr_shape[axis], 0.2 * factor, 0.2 * factor, 0.2)
    op = SliceOperator.from_geometry(geom)
    lr = np.random.default_rng(0).uniform(-1, 1, lr_shape).astype(np.float32)
    res = super_resolve(lr, op, models, steps=2, progress=False)
    assert res.mean.shape == geom.hr_shape(lr_shape)
    assert res.residual <= 1e-4
    assert set(res.timings) == {*planes_for_axis(axis), "total"}
    assert res.params["Planes"] == list(planes_for_axis(axis))


def test_fov_40x52x24(models):
    """(c) A FOV that is not 144×144×64: 40×52×24 LR slices, 2.5× along S-I."""
    geom = SliceGeometry.from_lr(2, 24, 0.5, 0.5, 0.2)
    op = SliceOperator.from_geometry(geom)
    lr = np.random.default_rng(1).uniform(-1, 1, (40, 52, 24)).astype(np.float32)
    res = super_resolve(lr, op, models, steps=1, progress=False)
    assert res.mean.shape == (40, 52, 60)
    assert res.residual <= 1e-4


def test_plane_volume_and_slice_subset(models, hr_volume):
    op = _operator_from_hr(1, hr_volume.shape[1], 2.5)
    lr = op(hr_volume)
    full, _ = super_resolve_plane(lr, op, models["sagittal"], steps=2)
    assert full.shape == hr_volume.shape
    part, bs = super_resolve_plane(lr, op, models["sagittal"], steps=2, slices=[3, 7])
    assert part.shape == (2, *hr_volume.shape[1:]) and bs >= 1
    np.testing.assert_allclose(part, full[[3, 7]], atol=1e-5)


def test_seeds_and_batch_size(models, hr_volume):
    """(d) Same seed → identical (whatever the batch size); other seed → other sample."""
    op = _operator_from_hr(2, hr_volume.shape[2], 5.0)
    lr = op(hr_volume)
    a = super_resolve(lr, op, models, steps=3, seed=7, progress=False).mean
    b = super_resolve(lr, op, models, steps=3, seed=7, progress=False).mean
    c = super_resolve(lr, op, models, steps=3, seed=8, progress=False).mean
    d = super_resolve(lr, op, models, steps=3, seed=7, batch_size=3, progress=False).mean
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, d, atol=1e-5)
    assert np.abs(a - c).max() > 1e-2


def test_posterior_samples_mean_and_std(models, hr_volume):
    """(e) n_samples=K: mean of the K seeds' outputs, std > 0 only in the null space."""
    op = _operator_from_hr(1, hr_volume.shape[1], 5.0)
    lr = op(hr_volume)
    kw = {"steps": 3, "eta": 0.5, "progress": False}
    s0 = super_resolve(lr, op, models, seed=4, **kw)
    s1 = super_resolve(lr, op, models, seed=5, **kw)
    both = super_resolve(lr, op, models, seed=4, n_samples=2, **kw)
    assert s0.std is None
    np.testing.assert_allclose(both.mean, (s0.mean + s1.mean) / 2, atol=1e-5)
    np.testing.assert_allclose(both.std, np.abs(s0.mean - s1.mean) / np.sqrt(2), atol=1e-5)
    assert both.std.shape == both.mean.shape and both.std.max() > 1e-2
    diff = (s0.mean - s1.mean).astype(np.float64)
    assert np.linalg.norm(op(diff)) <= 1e-4 * np.linalg.norm(diff)  # null-space only
    assert both.residual <= 1e-4
    assert both.params["NSamples"] == 2


def test_null_space_shrinkage_is_consistent_and_pulls_towards_pinv(models, hr_volume):
    """Shrinkage: still A x = y; every voxel between the plain mean and A⁺y's null part."""
    from bida_app.diffusion.bida import shrink_null_space

    op = _operator_from_hr(1, hr_volume.shape[1], 5.0)
    lr = op(hr_volume)
    kw = {"steps": 3, "eta": 0.5, "progress": False, "seed": 4, "n_samples": 2}
    plain = super_resolve(lr, op, models, **kw)
    shrunk = super_resolve(lr, op, models, null_shrinkage=True, **kw)
    assert shrunk.residual <= 1e-4 and shrunk.params["NullSpaceShrinkage"]
    np.testing.assert_allclose(shrunk.std, plain.std)
    np.testing.assert_allclose(
        shrunk.mean, shrink_null_space(plain.mean, plain.std, lr, op), atol=1e-5
    )
    base = op.pinv(lr.astype(np.float64))
    # the null-space energy can only shrink
    null_plain = np.linalg.norm(op.null_projector(plain.mean.astype(np.float64)))
    null_shrunk = np.linalg.norm(op.null_projector(shrunk.mean.astype(np.float64)))
    assert null_shrunk < null_plain
    assert np.linalg.norm(shrunk.mean - base) < np.linalg.norm(plain.mean - base)


def test_background_only_slices_take_the_pseudo_inverse(models, hr_volume):
    """Padding slices (LR all -1) are not sampled: they equal A⁺y; other slices unchanged."""
    op = _operator_from_hr(1, hr_volume.shape[1], 5.0)
    lr = op(hr_volume).astype(np.float32)
    lr[:, :, :3] = -1.0  # three axial slices of pure padding
    kw = {"steps": 2, "seed": 1}
    vol, _ = super_resolve_plane(lr, op, models["axial"], **kw)
    base = op.pinv(lr.astype(np.float64))
    np.testing.assert_allclose(vol[:, :, :3], base[:, :, :3], atol=1e-6)
    part, _ = super_resolve_plane(lr, op, models["axial"], slices=range(3, lr.shape[2]), **kw)
    np.testing.assert_allclose(vol[:, :, 3:], part, atol=1e-6)


def test_missing_plane_model_is_clear(models, hr_volume):
    op = _operator_from_hr(1, hr_volume.shape[1], 2.5)
    only_axial = {"axial": models["axial"]}
    with pytest.raises(BidaError, match="missing: sagittal") as err:
        super_resolve(op(hr_volume), op, only_axial, steps=1, progress=False)
    assert err.value.code == ExitCode.MISSING_INPUT


def test_bad_inputs(models, hr_volume):
    op = _operator_from_hr(1, hr_volume.shape[1], 2.5)
    lr = op(hr_volume)
    with pytest.raises(BidaError, match="slice operator expects") as err:
        super_resolve(lr[:, :-1], op, models, steps=1, progress=False)
    assert err.value.code == ExitCode.BAD_DATA
    bad = lr.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(BidaError, match="NaN"):
        super_resolve(bad, op, models, steps=1, progress=False)


def test_sidecar_entries(models, hr_volume):
    op = _operator_from_hr(0, hr_volume.shape[0], 2.5)
    res = super_resolve(op(hr_volume), op, models, steps=1, progress=False)
    side = res.sidecar()
    assert side["DataConsistencyResidual"] == res.residual
    assert side["BidaParameters"]["Steps"] == 1
    assert side["BidaDevice"]["Device"] == "cpu"
    assert side["BidaDevice"]["ComputeDtype"] == "float32"


class _OOMAbove(nn.Module):
    """Wraps a network and raises CUDA's out-of-memory error for batches above ``limit``."""

    def __init__(self, net: nn.Module, limit: int):
        super().__init__()
        self.net, self.limit, self.calls = net, limit, []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("simulated")
        return self.net(x, t)


def test_out_of_memory_halves_the_batch(models, hr_volume):
    op = _operator_from_hr(1, hr_volume.shape[1], 2.5)
    lr = op(hr_volume)
    wrapped = _OOMAbove(models["axial"].net, limit=3)
    pm = PlaneModel("axial", wrapped, TINY)
    ticks = []
    vol, bs = super_resolve_plane(lr, op, pm, steps=2, batch_size=12, progress=ticks.append)
    assert bs == 3 and wrapped.calls[:3] == [12, 6, 3]
    ref, _ = super_resolve_plane(lr, op, models["axial"], steps=2, batch_size=3)
    np.testing.assert_allclose(vol, ref, atol=1e-6)
    assert sum(ticks) == 2 * hr_volume.shape[2]  # progress counts each slice-step once


def test_single_plane_override(models, hr_volume):
    """``planes=`` runs one plane only; the result is that plane's volume."""
    op = _operator_from_hr(1, hr_volume.shape[1], 2.5)
    lr = op(hr_volume)
    one = super_resolve(lr, op, models, steps=2, planes=("sagittal",), progress=False)
    vol, _ = super_resolve_plane(lr, op, models["sagittal"], steps=2)
    np.testing.assert_allclose(one.mean, vol, atol=1e-6)
    assert one.params["Planes"] == ["sagittal"] and one.residual <= 1e-4
    both = super_resolve(lr, op, models, steps=2, progress=False)
    axial, _ = super_resolve_plane(lr, op, models["axial"], steps=2)
    np.testing.assert_allclose(both.mean, (vol + axial) / 2, atol=1e-6)
