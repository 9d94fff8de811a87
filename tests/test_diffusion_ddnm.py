"""DDIM sampler on the flow path with DDNM range-space replacement, on 2D slice batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bida_app.diffusion.ddnm import RangeReplacement, ddnm_sample
from bida_app.diffusion.flow import fresh_noise_scale as _fresh_noise_scale
from bida_app.diffusion.flow import v_from_x0
from bida_app.models import UNet, UNetConfig
from bida_app.physics import SliceGeometry, SliceOperator


def _operator(n_hr: int, factor: float) -> SliceOperator:
    geom = SliceGeometry.from_hr(0, n_hr, 0.2 * factor, 0.2 * factor, 0.2)
    return SliceOperator.from_geometry(geom)


def _slices(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Smooth-ish test images in [-1, 1] with a -1 background border."""
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.avg_pool2d(torch.randn(b, 1, h + 2, w + 2, generator=g), 3, 1)
    x = torch.tanh(2 * x)
    x[..., :1, :] = -1
    x[..., :, :1] = -1
    return x


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(4.0 / float(((a - b) ** 2).mean()))


def _tiny_net(seed: int) -> UNet:
    """A ``tiny`` UNet with random weights drawn after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return UNet(UNetConfig.preset("tiny")).eval()


def _gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 1000 + i) for i in range(n)]


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_oracle_velocity_recovers_slices(dim, eta):
    """With the true velocity of known slices, the sampler returns those slices."""
    x_true = _slices(3, 20, 12) if dim == 2 else _slices(3, 12, 20)
    op = _operator(20, 5.0)
    y = op.along(dim)(x_true)
    pad = (2, 2, 0, 0) if dim == 2 else (0, 0, 1, 3)
    canvas = torch.nn.functional.pad(x_true, (pad[2], pad[3], pad[0], pad[1]), value=-1.0)

    def oracle(xt, t):
        return v_from_x0(xt, canvas, t)

    out = ddnm_sample(oracle, y, op, dim, pad=pad, steps=16, eta=eta, generators=_gens(3))
    assert out.shape == x_true.shape
    assert _psnr(out, x_true) >= 40.0


@pytest.mark.parametrize("factor", [2.5, 5.0])
def test_random_network_output_is_data_consistent(factor):
    net = _tiny_net(seed=0)
    op = _operator(18, factor)
    y = op.along(3)(_slices(2, 10, 18))
    with torch.no_grad():
        out = ddnm_sample(net, y, op, 3, pad=(1, 1, 1, 1), steps=4, generators=_gens(2))
    assert out.shape == (2, 1, 10, 18)
    rel = torch.linalg.vector_norm(op.along(3)(out) - y) / torch.linalg.vector_norm(y)
    assert rel <= 1e-5


def test_range_replacement_matches_operator_and_holds_background():
    op = _operator(16, 2.5)
    x_true = _slices(2, 16, 8)
    y = op.along(2)(x_true)
    dc = RangeReplacement(op, y, 2, pad=(1, 3, 2, 2))
    assert dc.canvas_shape == (20, 12)
    x = torch.randn(2, 1, 20, 12)
    out = dc(x)
    expected = op.along(2).consistency(dc.crop(x), y)
    torch.testing.assert_close(dc.crop(out), expected, atol=1e-5, rtol=1e-5)
    border = torch.ones_like(out, dtype=torch.bool)
    border[..., 1:17, 2:10] = False
    assert torch.all(out[border] == -1.0)
    # idempotent: the data part is already consistent
    torch.testing.assert_close(dc(out), out, atol=1e-5, rtol=1e-5)


def test_batch_size_does_not_change_result():
    net = _tiny_net(seed=1)
    op = _operator(16, 2.5)
    y = op.along(2)(_slices(4, 16, 8))
    with torch.no_grad():
        whole = ddnm_sample(net, y, op, 2, steps=3, eta=0.5, generators=_gens(4))
        parts = torch.cat(
            [
                ddnm_sample(
                    net, y[i : i + 1], op, 2, steps=3, eta=0.5, generators=_gens(4)[i : i + 1]
                )
                for i in range(4)
            ]
        )
    torch.testing.assert_close(whole, parts, atol=1e-5, rtol=1e-5)


def test_fresh_noise_scale():
    assert _fresh_noise_scale(0.75, 0.5, 0.0) == 0.0
    assert _fresh_noise_scale(0.25, 0.0, 1.0) == 0.0
    # from pure noise (SNR 0) eta=1 replaces all of the noise
    assert _fresh_noise_scale(1.0, 0.5, 1.0) == pytest.approx(0.5)
    for t, s in [(0.9, 0.8), (0.5, 0.25), (0.2, 0.1)]:
        c = _fresh_noise_scale(t, s, 1.0)
        assert 0 < c < s
        snr = lambda u: ((1 - u) / u) ** 2  # noqa: E731
        assert c == pytest.approx(s * np.sqrt(1 - snr(t) / snr(s)))


def test_eta_changes_samples_and_generators_fix_them():
    net = _tiny_net(seed=2)
    op = _operator(16, 5.0)
    y = op.along(2)(_slices(2, 16, 8))
    with torch.no_grad():
        a = ddnm_sample(net, y, op, 2, steps=4, eta=1.0, generators=_gens(2, 0))
        b = ddnm_sample(net, y, op, 2, steps=4, eta=1.0, generators=_gens(2, 0))
        c = ddnm_sample(net, y, op, 2, steps=4, eta=0.0, generators=_gens(2, 0))
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-3


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_gaussian_prior_null_space_statistics(eta):
    """Exact velocity of an isotropic Gaussian prior N(m, s²): the null-space part of the
    DDNM samples follows the prior's, and the sampler converges to it as steps grow (this
    checks the noise estimate and the fresh-noise scaling of each step)."""
    m, s = 0.2, 0.3

    def gauss(xt, t):
        t = t.view(-1, 1, 1, 1)
        x0 = m + (1 - t) * s**2 / ((1 - t) ** 2 * s**2 + t**2) * (xt - (1 - t) * m)
        return (xt - x0) / t

    op = _operator(20, 5.0)
    null = op.along(2).null_projector
    x = m + s * torch.randn(128, 1, 20, 8, generator=torch.Generator().manual_seed(0))
    y = op.along(2)(x)
    ratios = []
    for steps in (16, 256):
        g = torch.Generator().manual_seed(1)
        out = ddnm_sample(gauss, y, op, 2, steps=steps, eta=eta, generators=g, clip=False)
        dev = null(out) - null(torch.full_like(out, m))
        assert dev.mean().abs() < 0.01
        ratios.append(float((dev**2).sum(2).mean() / (20 - op.shape[0]) / s**2))
    assert abs(ratios[1] - 1) < 0.05
    assert abs(ratios[1] - 1) < abs(ratios[0] - 1)


def _zero_velocity(xt, t):
    """A prior that knows nothing: v = 0 everywhere."""
    return torch.zeros_like(xt)


@pytest.mark.parametrize("dim", [2, 3])
def test_warm_start_stays_near_its_estimate_and_is_data_consistent(dim):
    """Started late from a consistent estimate, a useless prior barely moves it."""
    x_true = _slices(2, 20, 12) if dim == 2 else _slices(2, 12, 20)
    op = _operator(20, 5.0)
    y = op.along(dim)(x_true)
    init = op.along(dim).consistency(torch.zeros_like(x_true), y)  # A⁺y: consistent
    late = ddnm_sample(
        _zero_velocity, y, op, dim, steps=4, generators=_gens(2), x_init=init, t_start=0.05
    )
    cold = ddnm_sample(_zero_velocity, y, op, dim, steps=4, generators=_gens(2))
    err = float(op.along(dim).relative_residual(late.double(), y.double()))
    assert err < 1e-5
    # x0|t of a zero velocity is x_t itself: only the 5 % of noise (and clipping) is left
    assert float((late - init).abs().mean()) < 0.05
    assert float((cold - init).abs().mean()) > 0.3  # from pure noise it lands elsewhere


def test_start_time_one_ignores_the_estimate():
    x_true = _slices(2, 20, 12)
    op = _operator(20, 2.5)
    y = op.along(2)(x_true)
    plain = ddnm_sample(_zero_velocity, y, op, 2, steps=3, generators=_gens(2))
    given = ddnm_sample(
        _zero_velocity, y, op, 2, steps=3, generators=_gens(2), x_init=x_true, t_start=1.0
    )
    assert torch.equal(plain, given)


@pytest.mark.parametrize("t_start", [0.0, -0.5, 1.5])
def test_start_time_outside_the_unit_interval_is_refused(t_start):
    op = _operator(20, 2.5)
    y = op.along(2)(_slices(1, 20, 12))
    with pytest.raises(ValueError, match="t_start"):
        ddnm_sample(_zero_velocity, y, op, 2, steps=2, x_init=y, t_start=t_start)


def test_warm_start_needs_an_estimate():
    op = _operator(20, 2.5)
    y = op.along(2)(_slices(1, 20, 12))
    with pytest.raises(ValueError, match="x_init"):
        ddnm_sample(_zero_velocity, y, op, 2, steps=2, t_start=0.5)
