"""The flow (velocity) parameterization, in one place for the sampler and the trainer.

The forward path is the straight line between data and noise,

    x_t = (1 - t) x0 + t eps,   t in [0, 1],

and the network predicts its velocity ``v = dx_t/dt = eps - x0``. Given ``x_t`` and ``v``
both endpoints follow: ``x0 = x_t - t v`` and ``eps = x_t + (1 - t) v``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(x_t, t) -> v`` with ``x_t`` of shape ``(B, C, H, W)`` and ``t`` of shape ``(B,)``."""


def _bcast(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """Times of shape ``(B,)`` (or a scalar) broadcast against ``like`` ``(B, ...)``."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.reshape(-1, *([1] * (like.ndim - 1))) if t.ndim else t


def interpolate(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """``x_t = (1 - t) x0 + t eps``."""
    t = _bcast(t, x0)
    return (1 - t) * x0 + t * eps


def velocity(x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Training target ``v = eps - x0``."""
    return eps - x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Clean-image estimate ``x0 = x_t - t v``.

    Examples
    --------
    >>> x0, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    >>> t = torch.tensor([0.2, 0.7])
    >>> xt = interpolate(x0, eps, t)
    >>> bool(torch.allclose(x0_from_v(xt, velocity(x0, eps), t), x0, atol=1e-6))
    True
    """
    return x_t - _bcast(t, x_t) * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Noise estimate ``eps = x_t + (1 - t) v``."""
    return x_t + (1 - _bcast(t, x_t)) * v


def v_from_x0(x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Velocity that points from ``x0`` through ``x_t``: ``(x_t - x0) / t`` (``t > 0``)."""
    return (x_t - x0) / _bcast(t, x_t)


def sample_times(
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    schedule: str = "uniform",
) -> torch.Tensor:
    """Training times in (0, 1): ``"uniform"`` or ``"logit_normal"`` (SD3-style)."""
    if schedule == "uniform":
        return torch.rand(n, generator=generator, device=device)
    if schedule == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=generator, device=device))
    raise ValueError(f"unknown time schedule {schedule!r}")


def flow_loss(
    model: Denoiser,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    t: torch.Tensor | None = None,
    schedule: str = "uniform",
) -> torch.Tensor:
    """Mean-squared error between the predicted and the true velocity (the training loss).

    Parameters
    ----------
    model : callable
        ``(x_t, t) -> v``.
    x0 : Tensor, shape (B, C, H, W)
        Clean slices in the standardized intensity range.
    generator : torch.Generator, optional
        Source of ``t`` and ``eps`` (on ``x0``'s device) for reproducible training.
    t : Tensor, shape (B,), optional
        Fixed times instead of random ones.
    schedule : str
        Distribution of random times (see :func:`sample_times`).

    Examples
    --------
    >>> from bida_app.models import UNet, UNetConfig
    >>> net = UNet(UNetConfig.preset("tiny"))
    >>> g = torch.Generator().manual_seed(0)
    >>> loss = flow_loss(net, torch.zeros(2, 1, 8, 8), g)
    >>> loss.ndim, bool(loss > 0)
    (0, True)
    """
    b = x0.shape[0]
    if t is None:
        t = sample_times(b, generator=generator, device=x0.device, schedule=schedule)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    v = model(interpolate(x0, eps, t), t)
    return F.mse_loss(v.float(), velocity(x0, eps).float())


def time_grid(steps: int = 16, *, shift: float = 1.0) -> torch.Tensor:
    """Sampling times from 1 (noise) down to 0 (data): ``steps + 1`` values, float64.

    ``shift > 1`` spends more steps at high noise (``t' = s t / (1 + (s - 1) t)``).

    Examples
    --------
    >>> time_grid(4).tolist()
    [1.0, 0.75, 0.5, 0.25, 0.0]
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    if shift != 1.0:
        t = shift * t / (1 + (shift - 1) * t)
    return t


def fresh_noise_scale(t: float, s: float, eta: float) -> float:
    """DDIM's ``sigma`` for a step ``t → s`` on the flow path (0 when ``eta = 0``).

    The fraction of ``s eps`` replaced by fresh noise follows the DDPM posterior,
    ``c = eta · s · sqrt(1 − SNR_t / SNR_s)`` with ``SNR_t = ((1 − t) / t)²``.
    """
    if eta <= 0.0 or s <= 0.0:
        return 0.0
    snr_t = ((1.0 - t) / t) ** 2
    snr_s = ((1.0 - s) / s) ** 2
    return min(s, eta * s * math.sqrt(max(0.0, 1.0 - snr_t / snr_s)))


def ddim_step(
    x_t: torch.Tensor,
    v: torch.Tensor,
    t: float,
    s: float,
    *,
    denoised: Callable[[torch.Tensor], torch.Tensor] | None = None,
    eta: float = 0.0,
    noise: Callable[[], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step ``t → s`` on the flow path: the one step of every sampler in bida.

    Parameters
    ----------
    x_t : Tensor
        State at time ``t``.
    v : Tensor
        The network's velocity at ``(x_t, t)``.
    t, s : float
        Current and next time, ``1 ≥ t > s ≥ 0``.
    denoised : callable, optional
        Applied to the clean estimate ``x0|t`` before the move (clipping, DDNM's range
        replacement).
    eta : float
        0: deterministic DDIM; 1: DDPM-like fresh noise (:func:`fresh_noise_scale`).
    noise : callable, optional
        Draws the fresh noise (needed when ``eta > 0``).

    Returns
    -------
    x_s : Tensor
        State at time ``s`` (the clean estimate itself when ``s = 0``).
    x0 : Tensor
        The clean estimate ``x0|t`` (after ``denoised``).

    Examples
    --------
    >>> x0 = torch.ones(1, 1, 2, 2)
    >>> eps = torch.zeros_like(x0)
    >>> x_s, est = ddim_step(interpolate(x0, eps, 0.5), velocity(x0, eps), 0.5, 0.25)
    >>> bool(torch.allclose(est, x0)), bool(torch.allclose(x_s, interpolate(x0, eps, 0.25)))
    (True, True)
    """
    x0 = x0_from_v(x_t, v, t)
    eps = eps_from_v(x_t, v, t)
    if denoised is not None:
        x0 = denoised(x0)
    if s <= 0.0:
        return x0, x0
    c = fresh_noise_scale(t, s, eta)
    if c <= 0.0:
        return (1.0 - s) * x0 + s * eps, x0
    if noise is None:
        raise ValueError("eta > 0 needs a noise source")
    return (1.0 - s) * x0 + math.sqrt(s * s - c * c) * eps + c * noise(), x0
