"""Synthetic rat-like head phantoms on a 200 µm grid (for the demo dataset and tests).

The phantom is a smooth, piecewise-constant T2-weighted head: scalp and temporal muscle,
a dark skull shell, cortex (grey matter), a white-matter core with a corpus-callosum-like
band, bright CSF ventricles, hippocampus-like arcs and an olfactory bulb. A smooth
multiplicative bias field and Rician noise make it look like an uncorrected scan. It is not
real anatomy and results on it must never be presented as real-data results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: T2w intensities of the compartments (arbitrary units, CSF brightest).
INTENSITY = {"scalp": 0.45, "skull": 0.07, "gm": 0.62, "wm": 0.38, "csf": 1.0, "bulb": 0.7}


@dataclass(frozen=True)
class Phantom:
    """A phantom volume in RAS voxel order.

    Attributes
    ----------
    clean : ndarray
        Noise-free, bias-free intensities.
    image : ndarray
        ``clean`` times the bias field, with Rician noise: what a scanner would give.
    bias : ndarray
        The multiplicative bias field.
    brain : ndarray of bool
        Brain mask (everything inside the skull).
    labels : ndarray of int
        0 background, 1 scalp, 2 skull, 3 GM, 4 WM, 5 CSF, 6 olfactory bulb.
    affine : ndarray
        RAS affine (mm), origin at the volume centre.
    """

    clean: np.ndarray
    image: np.ndarray
    bias: np.ndarray
    brain: np.ndarray
    labels: np.ndarray
    affine: np.ndarray


def _ellipsoid(grid: tuple[np.ndarray, ...], centre, radii) -> np.ndarray:
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True))
    return r2 <= 1.0


def make_rat_phantom(
    shape: tuple[int, int, int] = (100, 120, 56),
    voxel_mm: float = 0.2,
    *,
    seed: int = 0,
    noise: float = 0.02,
    bias_strength: float = 0.3,
) -> Phantom:
    """Generate one rat-like head phantom.

    Parameters
    ----------
    shape : tuple of int
        Grid size in RAS order (L-R, P-A, I-S).
    voxel_mm : float
        Isotropic voxel size in mm.
    seed : int
        Random seed; each seed gives a slightly different animal (size, pose, bias).
    noise : float
        Standard deviation of the Gaussian noise on the real and imaginary channels
        (Rician magnitude noise), relative to the CSF intensity.
    bias_strength : float
        Peak relative amplitude of the smooth multiplicative bias field.

    Examples
    --------
    >>> ph = make_rat_phantom((40, 48, 24), 0.5, seed=1)
    >>> ph.image.shape, bool(ph.brain.any())
    ((40, 48, 24), True)
    """
    rng = np.random.default_rng(seed)
    ax = [(np.arange(n) - (n - 1) / 2.0) * voxel_mm for n in shape]
    x, y, z = np.meshgrid(*ax, indexing="ij")
    ext = np.array(shape) * voxel_mm
    s = 1.0 + rng.uniform(-0.06, 0.06)  # animal size
    # small in-plane (yaw) rotation and shift of the whole head
    ang = np.deg2rad(rng.uniform(-5, 5))
    xr = np.cos(ang) * x - np.sin(ang) * y + rng.uniform(-0.3, 0.3)
    yr = np.sin(ang) * x + np.cos(ang) * y + rng.uniform(-0.3, 0.3)
    zr = z + rng.uniform(-0.2, 0.2)
    g = (xr, yr, zr)

    head_r = np.array([0.42, 0.43, 0.42]) * ext * s
    head = _ellipsoid(g, (0, 0, 0), head_r)
    skull_out = _ellipsoid(g, (0, -0.02 * ext[1], 0.02 * ext[2]), head_r * [0.9, 0.92, 0.84])
    brain = _ellipsoid(g, (0, -0.02 * ext[1], 0.02 * ext[2]), head_r * [0.83, 0.84, 0.76])
    bulb = _ellipsoid(g, (0, 0.36 * ext[1] * s, 0.02 * ext[2]), head_r * [0.22, 0.16, 0.22])
    bulb &= skull_out
    wm = _ellipsoid(g, (0, -0.04 * ext[1], 0.0), head_r * [0.55, 0.6, 0.42])
    cc = _ellipsoid(g, (0, -0.02 * ext[1], 0.11 * ext[2]), head_r * [0.5, 0.5, 0.07])
    vent = np.zeros(shape, bool)
    for side in (-1, 1):
        vent |= _ellipsoid(
            g, (side * 0.07 * ext[0], 0.02 * ext[1], 0.05 * ext[2]), head_r * [0.06, 0.28, 0.1]
        )
        # hippocampus-like arc: a thin shell segment posterior to the ventricles
        arc = _ellipsoid(g, (side * 0.13 * ext[0], -0.14 * ext[1], 0.0), head_r * [0.18, 0.2, 0.3])
        arc &= ~_ellipsoid(
            g, (side * 0.13 * ext[0], -0.14 * ext[1], 0.0), head_r * [0.13, 0.15, 0.24]
        )
        wm &= ~arc
    third = _ellipsoid(g, (0, -0.05 * ext[1], -0.02 * ext[2]), head_r * [0.02, 0.2, 0.16])

    labels = np.zeros(shape, np.int16)
    labels[head] = 1
    labels[skull_out] = 2
    labels[brain] = 3
    labels[brain & wm] = 4
    labels[brain & cc] = 4
    labels[brain & (vent | third)] = 5
    labels[bulb & ~brain] = 6
    clean = np.zeros(shape, np.float64)
    for lab, key in zip(range(1, 7), ("scalp", "skull", "gm", "wm", "csf", "bulb"), strict=True):
        clean[labels == lab] = INTENSITY[key]
    # fine texture inside tissue so the phantom is not perfectly flat
    tex = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    tex /= np.abs(tex).max() + 1e-12
    clean = np.where(labels > 0, clean * (1.0 + 0.06 * tex), 0.0)
    clean = ndimage.gaussian_filter(clean, 0.5)  # partial volume at the 200 µm scale

    c = rng.uniform(-0.5, 0.5, 3) * ext
    bias = (
        1.0
        + bias_strength
        * np.exp(
            -(((x - c[0]) / ext[0]) ** 2 + ((y - c[1]) / ext[1]) ** 2 + ((z - c[2]) / ext[2]) ** 2)
        )
        - bias_strength * 0.5
    )
    n1, n2 = rng.standard_normal((2, *shape)) * noise
    image = np.sqrt((clean * bias + n1) ** 2 + n2**2)

    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2.0 * voxel_mm
    return Phantom(
        clean=clean.astype(np.float32),
        image=image.astype(np.float32),
        bias=bias.astype(np.float32),
        brain=(labels >= 3),
        labels=labels,
        affine=affine,
    )
