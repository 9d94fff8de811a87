"""On-the-fly augmentation of training slices (torch): small rotations and shifts, crops."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    max_degrees: float = 10.0,
    max_shift: float = 5.0,
    background: float = -1.0,
) -> torch.Tensor:
    """Rotate each slice by up to ``max_degrees`` and shift it by up to ``max_shift`` pixels.

    Bilinear interpolation; pixels coming from outside the slice get ``background``.

    Parameters
    ----------
    x : Tensor, shape (B, 1, H, W)
        Slices.
    generator : torch.Generator
        CPU generator of the random angles and shifts.
    max_degrees, max_shift : float
        Uniform ranges ``[-max, max]``; 0 disables.
    background : float
        Fill value.

    Examples
    --------
    >>> x = torch.full((2, 1, 8, 8), -1.0)
    >>> bool((random_affine(x, torch.Generator().manual_seed(0)) == -1).all())
    True
    """
    b, _, h, w = x.shape
    if max_degrees <= 0 and max_shift <= 0:
        return x
    u = torch.rand(b, 3, generator=generator) * 2 - 1
    ang = u[:, 0] * math.radians(max_degrees)
    # affine_grid works in normalized coordinates [-1, 1] over each axis (align_corners=False)
    tx = u[:, 1] * max_shift * 2.0 / w
    ty = u[:, 2] * max_shift * 2.0 / h
    cos, sin = torch.cos(ang), torch.sin(ang)
    aspect = h / w  # keep rotations rigid in pixel units on non-square slices
    theta = torch.stack(
        [
            torch.stack([cos, -sin * aspect, tx], dim=1),
            torch.stack([sin / aspect, cos, ty], dim=1),
        ],
        dim=1,
    ).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(
        x - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out + background


def crop_origins(
    boxes: np.ndarray,
    size: tuple[int, int],
    shape: tuple[int, int],
    generator: torch.Generator,
) -> np.ndarray:
    """Top-left corners of ``size`` crops of ``shape`` slices centred in their foreground box.

    Each crop centre is drawn uniformly inside the slice's foreground box ``(r0, r1, c0, c1)``
    and the window is then clamped inside the slice.

    Examples
    --------
    >>> o = crop_origins(np.array([[10, 20, 0, 64]]), (8, 64), (64, 64),
    ...                  torch.Generator().manual_seed(0))
    >>> bool(6 <= o[0, 0] <= 16), int(o[0, 1])
    (True, 0)
    """
    n = len(boxes)
    u = torch.rand(n, 2, generator=generator).numpy()
    out = np.empty((n, 2), dtype=np.int64)
    for d in range(2):
        lo, hi = boxes[:, 2 * d], boxes[:, 2 * d + 1]
        centre = lo + u[:, d] * np.maximum(hi - lo, 1)
        start = np.floor(centre - size[d] / 2).astype(np.int64)
        out[:, d] = np.clip(start, 0, shape[d] - size[d])
    return out


def pad_to_multiple(x: torch.Tensor, factor: int, background: float = -1.0) -> torch.Tensor:
    """Pad the last two dims of ``x`` (centred, odd pixel after) to multiples of ``factor``.

    Examples
    --------
    >>> pad_to_multiple(torch.zeros(1, 1, 5, 8), 4).shape
    torch.Size([1, 1, 8, 8])
    """
    h, w = x.shape[-2:]
    ph, pw = -h % factor, -w % factor
    if not (ph or pw):
        return x
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=background)
