"""Deterministic DDIM-style sampling on the flow path with DDNM range-space replacement.

At each time ``t`` of :func:`~bida_app.diffusion.flow.time_grid` the network's velocity gives
the clean estimate ``x0|t`` and the noise estimate ``eps``; the data then overwrite the range
space of the clean estimate, ``x0|t <- A⁺y + (I − A⁺A) x0|t`` (Wang et al., ICLR 2023), and the
state moves to the next time along the straight path, ``x_s = (1 − s) x0|t + s eps``. With
``eta > 0`` part of ``s eps`` is replaced by fresh noise, as in DDIM: the fraction follows the
DDPM posterior, ``c = eta · s · sqrt(1 − SNR_t / SNR_s)`` with ``SNR_t = ((1 − t) / t)²``.

The sampler works on batches of 2D slices ``(B, 1, H, W)``; the operator acts along one of the
two image dims. Slices may sit on a larger canvas (padding to the UNet's size multiple); the
padding is held at the background value like known data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..config import DEFAULT_STEPS
from ..physics import SliceOperator
from .flow import Denoiser, ddim_step, time_grid

Generators = torch.Generator | Sequence[torch.Generator] | None


def randn_like_batch(
    shape: Sequence[int],
    generators: Generators,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise of ``shape`` ``(B, ...)``.

    With a sequence of generators (one per batch element, on the CPU) every element's noise
    depends only on its own generator, so results do not change with the batch size.
    """
    if generators is None or isinstance(generators, torch.Generator):
        return torch.randn(tuple(shape), generator=generators, device=device, dtype=dtype)
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
    rows = [torch.randn(tuple(shape[1:]), generator=g, dtype=torch.float32) for g in generators]
    return torch.stack(rows).to(device=device, dtype=dtype)


class RangeReplacement:
    """``x ↦ A⁺y + (I − A⁺A) x`` on the data region of a (padded) canvas.

    Parameters
    ----------
    operator : SliceOperator
        Through-plane degradation; it acts along ``dim`` of the cropped slices.
    y : Tensor, shape (B, 1, h, w)
        Measured LR data of each slice (``operator.shape[0]`` samples along ``dim``).
    dim : int
        Tensor dim (2 or 3) the operator acts along.
    pad : tuple of int
        ``(top, bottom, left, right)`` padding of the HR slice on the canvas.
    background : float
        Value held in the padding.
    """

    def __init__(
        self,
        operator: SliceOperator,
        y: torch.Tensor,
        dim: int,
        pad: tuple[int, int, int, int] = (0, 0, 0, 0),
        background: float = -1.0,
    ) -> None:
        if dim not in (2, 3):
            raise ValueError("the operator must act along dim 2 or 3 of (B, C, H, W) slices")
        self.op = operator.along(dim)
        self.y = y
        self.pad = pad
        self.background = float(background)
        self.pinv_y = self.op.pinv(y)  # A⁺y is the same at every step
        self.null = self.op.null_projector
        self.hr_shape = tuple(self.pinv_y.shape[-2:])

    @property
    def canvas_shape(self) -> tuple[int, int]:
        """Height and width of the padded canvas."""
        top, bot, left, right = self.pad
        return self.hr_shape[0] + top + bot, self.hr_shape[1] + left + right

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """The HR region of a canvas."""
        top, _, left, _ = self.pad
        h, w = self.hr_shape
        return x[..., top : top + h, left : left + w]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Place HR slices on a canvas filled with the background value."""
        if self.pad == (0, 0, 0, 0):
            return x
        top, bot, left, right = self.pad
        return torch.nn.functional.pad(x, (left, right, top, bot), value=self.background)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.pinv_y + self.null(self.crop(x)))

    def final(self, x: torch.Tensor) -> torch.Tensor:
        """Cropped result with the exact replacement ``operator.consistency(x, y)``."""
        return self.op.consistency(self.crop(x), self.y)


def ddnm_sample(
    model: Denoiser,
    y: torch.Tensor,
    operator: SliceOperator,
    dim: int,
    *,
    pad: tuple[int, int, int, int] = (0, 0, 0, 0),
    steps: int = DEFAULT_STEPS,
    eta: float = 0.0,
    generators: Generators = None,
    background: float = -1.0,
    clip: bool = True,
    shift: float = 1.0,
    callback: Callable[[int], None] | None = None,
    x_init: torch.Tensor | None = None,
    t_start: float = 1.0,
) -> torch.Tensor:
    """Sample HR slices whose degradation equals ``y`` (DDNM on the flow path).

    Parameters
    ----------
    model : callable
        ``(x_t, t) -> v`` on canvases ``(B, 1, H + pad, W + pad)``.
    y : Tensor, shape (B, 1, h, w)
        LR data of each slice, float32, on the compute device.
    operator : SliceOperator
        Degradation acting along ``dim`` (``operator.shape = (n_lr, n_hr)``).
    dim : int
        2 or 3: the image dim holding the through-plane direction.
    pad : tuple of int
        ``(top, bottom, left, right)`` canvas padding (to the UNet's size multiple).
    steps : int
        Number of network evaluations (DDIM steps); 16 in the paper.
    eta : float
        0 for deterministic DDIM; 1 for DDPM-like fresh noise at each step.
    generators : torch.Generator or sequence of them, optional
        Noise source(s); one CPU generator per slice makes results batch-size invariant.
    background : float
        Intensity of the padding.
    clip : bool
        Clip ``x0|t`` to [-1, 1] before the range replacement (the data range).
    shift : float
        Time-grid shift (see :func:`~bida_app.diffusion.flow.time_grid`).
    callback : callable, optional
        Called with the step index after each step.
    x_init : Tensor, shape (B, 1, h, w), optional
        A warm start: an estimate of the HR slices (e.g. the data-consistent cubic). With
        ``t_start < 1`` the sampler begins at flow time ``t_start`` from
        ``(1 − t_start) x_init + t_start ε`` and spends its ``steps`` on ``[t_start, 0]``
        (SDEdit-style); the prior then only refines the estimate at the noise levels it
        has left.
    t_start : float
        Flow time in (0, 1] the sampling starts from; 1 (pure noise, the paper) ignores
        ``x_init``.

    Returns
    -------
    Tensor, shape (B, 1, n_hr-or-h, w-or-n_hr)
        HR slices (float32) with ``A x = y`` along ``dim`` to float precision.
    """
    dc = RangeReplacement(operator, y.float(), dim, pad, background)
    shape = (y.shape[0], y.shape[1], *dc.canvas_shape)
    if not 0.0 < t_start <= 1.0:
        raise ValueError(f"t_start must be in (0, 1], got {t_start}")
    x = randn_like_batch(shape, generators, y.device)
    ts = time_grid(steps, shift=shift)
    if t_start < 1.0:
        if x_init is None:
            raise ValueError("a warm start (t_start < 1) needs x_init")
        x = (1.0 - t_start) * dc.embed(x_init.to(x)) + t_start * x
        ts = ts * t_start
    ts = ts.tolist()

    def denoised(x0: torch.Tensor) -> torch.Tensor:
        return dc(x0.clamp(-1.0, 1.0) if clip else x0)

    def noise() -> torch.Tensor:
        return randn_like_batch(shape, generators, y.device)

    for i in range(steps):
        t, s = ts[i], ts[i + 1]
        v = model(x, torch.full((shape[0],), t, device=y.device, dtype=torch.float32)).float()
        x, _ = ddim_step(x, v, t, s, denoised=denoised, eta=eta, noise=noise)
        if callback is not None:
            callback(i)
    return dc.final(x)
