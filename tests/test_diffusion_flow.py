"""The flow parameterization shared by sampler and trainer."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bida_app.diffusion.flow import (
    eps_from_v,
    flow_loss,
    interpolate,
    sample_times,
    time_grid,
    v_from_x0,
    velocity,
    x0_from_v,
)
from bida_app.models import UNet, UNetConfig


@settings(max_examples=25, deadline=None)
@given(t=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_endpoints_from_velocity(t, seed):
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    xt = interpolate(x0, eps, t)
    v = velocity(x0, eps)
    torch.testing.assert_close(x0_from_v(xt, v, t), x0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(eps_from_v(xt, v, t), eps, atol=1e-5, rtol=1e-5)
    if t > 1e-3:
        torch.testing.assert_close(v_from_x0(xt, x0, t), v, atol=1e-3, rtol=1e-3)


def test_per_sample_times_broadcast():
    x0, eps = torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)
    xt = interpolate(x0, eps, torch.tensor([0.25, 0.75]))
    assert torch.allclose(xt[0], torch.full((1, 3, 3), 0.25))
    assert torch.allclose(xt[1], torch.full((1, 3, 3), 0.75))


def test_time_grid():
    t = time_grid(16)
    assert t.shape == (17,) and t[0] == 1.0 and t[-1] == 0.0
    assert torch.all(t[1:] < t[:-1])
    shifted = time_grid(16, shift=3.0)
    assert shifted[0] == 1.0 and shifted[-1] == 0.0
    assert torch.all(shifted[1:-1] > t[1:-1])  # more steps spent at high noise
    with pytest.raises(ValueError):
        time_grid(0)


def test_sample_times_range():
    g = torch.Generator().manual_seed(0)
    for schedule in ("uniform", "logit_normal"):
        t = sample_times(1000, generator=g, schedule=schedule)
        assert t.min() >= 0 and t.max() <= 1 and 0.4 < t.mean() < 0.6
    with pytest.raises(ValueError):
        sample_times(3, schedule="cosine")


def test_flow_loss_zero_for_true_velocity_and_reproducible():
    x0 = torch.rand(4, 1, 8, 8) * 2 - 1

    def oracle(xt, t):
        return v_from_x0(xt, x0, t)

    g = torch.Generator().manual_seed(3)
    assert flow_loss(oracle, x0, g) < 1e-8
    net = UNet(UNetConfig.preset("tiny"))
    a = flow_loss(net, x0, torch.Generator().manual_seed(1))
    b = flow_loss(net, x0, torch.Generator().manual_seed(1))
    c = flow_loss(net, x0, torch.Generator().manual_seed(2))
    assert a > 0.1 and a == b and a != c


def test_flow_loss_trains():
    """A few optimiser steps on one image reduce the loss (gradients flow end to end)."""
    torch.manual_seed(0)
    net = UNet(UNetConfig.preset("tiny"))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x0 = torch.zeros(8, 1, 8, 8)
    x0[:, :, 2:6, 2:6] = 1.0
    t = torch.linspace(0.05, 0.95, 8)

    def loss_at(seed):
        return flow_loss(net, x0, torch.Generator().manual_seed(seed), t=t)

    with torch.no_grad():
        before = sum(loss_at(100 + i).item() for i in range(4))
    for step in range(40):
        opt.zero_grad()
        loss_at(step).backward()
        opt.step()
    with torch.no_grad():
        after = sum(loss_at(100 + i).item() for i in range(4))
    assert after < 0.8 * before


def test_ddim_step_follows_the_straight_path_and_needs_noise_for_eta():
    from bida_app.diffusion.flow import ddim_step, interpolate, velocity

    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    x_s, est = ddim_step(interpolate(x0, eps, 0.8), velocity(x0, eps), 0.8, 0.3)
    assert torch.allclose(est, x0, atol=1e-5)
    assert torch.allclose(x_s, interpolate(x0, eps, 0.3), atol=1e-5)
    last, _ = ddim_step(interpolate(x0, eps, 0.3), velocity(x0, eps), 0.3, 0.0)
    assert torch.allclose(last, x0, atol=1e-5)
    clipped, _ = ddim_step(x_s, velocity(x0, eps), 0.3, 0.0, denoised=lambda x: x.clamp(0, 0))
    assert torch.count_nonzero(clipped) == 0
    with pytest.raises(ValueError, match="noise"):
        ddim_step(x_s, velocity(x0, eps), 0.8, 0.3, eta=1.0)
