"""Unconditional samples of a plane prior (no data consistency) and PNG sample grids."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..device import autocast
from ..diffusion.flow import ddim_step, time_grid
from ..utils.io import atomic_path


@torch.no_grad()
def sample_prior(
    net: nn.Module,
    n: int,
    shape: Sequence[int],
    *,
    steps: int = 16,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    amp: torch.dtype | None = None,
) -> torch.Tensor:
    """Draw ``n`` slices of ``shape`` from the prior with deterministic DDIM on the flow path.

    Parameters
    ----------
    net : nn.Module
        ``(x_t, t) -> v``.
    n : int
        Number of slices.
    shape : (int, int)
        Slice height and width (multiples of the UNet factor).
    steps : int
        Sampling steps.
    generator : torch.Generator, optional
        CPU generator of the starting noise.
    device : str or torch.device
        Where the network runs.
    amp : torch.dtype, optional
        Autocast dtype (CUDA).

    Returns
    -------
    Tensor, shape (n, 1, H, W)
        Samples clipped to [-1, 1], on the CPU.

    Examples
    --------
    >>> from bida_app.models import UNet, UNetConfig
    >>> x = sample_prior(UNet(UNetConfig.preset("tiny")), 2, (8, 8), steps=2)
    >>> tuple(x.shape), bool(x.abs().max() <= 1)
    ((2, 1, 8, 8), True)
    """
    x = torch.randn(n, 1, *shape, generator=generator).to(device)
    ts = time_grid(steps).tolist()
    for t, s in zip(ts[:-1], ts[1:], strict=True):
        tt = torch.full((n,), t, device=x.device)
        with autocast(torch.device(device), amp):
            v = net(x, tt).float()
        x, _ = ddim_step(x, v, t, s)
    return x.clamp(-1, 1).cpu()


def save_grid(
    path: str | Path,
    rows: dict[str, np.ndarray],
    title: str = "",
) -> Path:
    """Save rows of slices ``(N, H, W)`` in [-1, 1] as a PNG (one labelled row per entry).

    Slices are in RAS voxel order (first axis the plane's first RAS axis); they are shown
    transposed with the origin at the bottom, i.e. in the anatomical orientation (superior
    or anterior up, the first axis left to right), whatever the plane.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = max(len(v) for v in rows.values())
    first, second = next(iter(rows.values())).shape[1:]
    aspect = first / second  # displayed width / height after the transpose
    fig, axes = plt.subplots(
        len(rows),
        n_cols,
        figsize=(1.4 * n_cols * aspect + 0.2, 1.4 * len(rows) + 0.5),
        squeeze=False,
    )
    for r, (label, imgs) in enumerate(rows.items()):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(imgs):
                ax.imshow(np.asarray(imgs[c]).T, cmap="gray", vmin=-1, vmax=1, origin="lower")
        axes[r, 0].set_title(label, fontsize=8, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
