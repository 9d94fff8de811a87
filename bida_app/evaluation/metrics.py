"""Image-quality metrics of a super-resolved volume against its isotropic reference.

* :func:`psnr` and :func:`ssim` (3D Gaussian-window SSIM) compare SR with HR;
* :func:`dice` scores two binary masks (cDSC: mask of SR vs mask of HR);
* :func:`crop_to_foreground` removes the zero padding around a volume first, as the paper does
  for the mice ("PSNR was calculated on images that had their zero-padding removed");
* :func:`consistency_residual` measures how far an SR volume is from reproducing the LR
  acquisition through the forward operator ``A``.

All functions take NumPy arrays of the same shape (any number of axes unless stated).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage


def _pair(x: Any, ref: Any) -> tuple[np.ndarray, np.ndarray]:
    x, ref = np.asarray(x, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if x.shape != ref.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {ref.shape}")
    return x, ref


def _mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise ValueError(f"mask shape {m.shape} differs from the images' {shape}")
    if not m.any():
        raise ValueError("mask is empty")
    return m


def psnr(
    x: np.ndarray, ref: np.ndarray, data_range: float | None = None, mask: np.ndarray | None = None
) -> float:
    """Peak signal-to-noise ratio (dB) of ``x`` against ``ref``.

    Parameters
    ----------
    x, ref : ndarray
        Test and reference images.
    data_range : float, optional
        Peak value range; defaults to ``ref.max() - ref.min()`` over the evaluated voxels.
    mask : ndarray of bool, optional
        Voxels to evaluate (default: all).

    Returns
    -------
    float
        ``10 log10(range² / MSE)``; ``inf`` when the images are identical.

    Examples
    --------
    >>> ref = np.linspace(0, 1, 100)
    >>> psnr(ref, ref)
    inf
    >>> round(psnr(ref + 0.1, ref), 6)
    20.0
    """
    x, ref = _pair(x, ref)
    m = _mask(mask, ref.shape)
    xv, rv = (x[m], ref[m]) if m is not None else (x.ravel(), ref.ravel())
    if data_range is None:
        data_range = float(rv.max() - rv.min())
    if data_range <= 0:
        raise ValueError("data_range must be positive (is the reference constant?)")
    mse = float(np.mean((xv - rv) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def ssim(
    x: np.ndarray,
    ref: np.ndarray,
    data_range: float | None = None,
    mask: np.ndarray | None = None,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Structural similarity with a Gaussian window (Wang et al. 2004), in 2D or 3D.

    Local means, variances and covariance are Gaussian-weighted (``sigma`` voxels, truncated
    at 3.5 σ, mirrored at the borders); the SSIM map is averaged over ``mask`` (default: all
    voxels).

    Parameters
    ----------
    x, ref : ndarray
        Test and reference images.
    data_range : float, optional
        Defaults to ``ref.max() - ref.min()``.
    mask : ndarray of bool, optional
        Voxels over which the SSIM map is averaged.
    sigma : float
        Gaussian window width (voxels).
    k1, k2 : float
        Stabilising constants (``C1 = (k1 L)²``, ``C2 = (k2 L)²``).

    Returns
    -------
    float
        Mean SSIM, 1 for identical images.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.random((12, 12, 12))
    >>> ssim(ref, ref)
    1.0
    >>> ssim(ref + rng.normal(0, 0.2, ref.shape), ref) < 0.9
    True
    """
    x, ref = _pair(x, ref)
    m = _mask(mask, ref.shape)
    if data_range is None:
        data_range = float(ref.max() - ref.min())
    if data_range <= 0:
        raise ValueError("data_range must be positive (is the reference constant?)")

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma, mode="reflect", truncate=3.5)

    mu_x, mu_r = blur(x), blur(ref)
    var_x = blur(x * x) - mu_x**2
    var_r = blur(ref * ref) - mu_r**2
    cov = blur(x * ref) - mu_x * mu_r
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    num = (2 * mu_x * mu_r + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_r**2 + c1) * (var_x + var_r + c2)
    smap = num / den
    return float(smap[m].mean() if m is not None else smap.mean())


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice similarity coefficient of two binary masks (nonzero = inside).

    Two empty masks agree perfectly (1.0).

    Examples
    --------
    >>> a = np.zeros(10, bool); a[:4] = True
    >>> b = np.zeros(10, bool); b[2:6] = True
    >>> dice(a, b), dice(a, a), dice(np.zeros(3), np.zeros(3))
    (0.5, 1.0, 1.0)
    """
    a, b = np.asarray(a) != 0, np.asarray(b) != 0
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def foreground_box(
    ref: np.ndarray, pad_value: float = 0.0, atol: float = 0.0
) -> tuple[slice, ...]:
    """Bounding box of the voxels of ``ref`` that are not padding.

    Padding is every voxel within ``atol`` of ``pad_value``; the box is the smallest one that
    holds all other voxels (planes made only of padding are removed from each side).

    Examples
    --------
    >>> ref = np.zeros((5, 6)); ref[1:3, 2:5] = 1.0
    >>> foreground_box(ref)
    (slice(1, 3, None), slice(2, 5, None))
    """
    ref = np.asarray(ref)
    keep = np.abs(ref - pad_value) > atol
    if not keep.any():
        raise ValueError("the reference is padding only")
    box = []
    for axis in range(ref.ndim):
        other = tuple(a for a in range(ref.ndim) if a != axis)
        idx = np.flatnonzero(keep.any(axis=other))
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


def crop_to_foreground(
    x: np.ndarray, ref: np.ndarray, pad_value: float = 0.0, atol: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``x`` and ``ref`` to the bounding box of ``ref``'s non-padding voxels.

    Parameters
    ----------
    x, ref : ndarray
        Test and reference volumes on the same grid.
    pad_value : float
        Value of the padding in ``ref`` (0 for zero padding; -1 for bida's standardised
        [-1, 1] volumes).
    atol : float
        Tolerance on ``pad_value``.

    Returns
    -------
    x_crop, ref_crop : ndarray

    Examples
    --------
    >>> ref = np.pad(np.ones((2, 2)), 1)
    >>> [a.shape for a in crop_to_foreground(ref * 2, ref)]
    [(2, 2), (2, 2)]
    """
    x, ref = np.asarray(x), np.asarray(ref)
    if x.shape != ref.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {ref.shape}")
    box = foreground_box(ref, pad_value, atol)
    return x[box], ref[box]


def consistency_residual(sr: np.ndarray, lr: np.ndarray, operator: Any) -> float:
    """Relative data-consistency residual ``‖A(sr) − lr‖₂ / ‖lr‖₂``.

    Parameters
    ----------
    sr : ndarray
        Super-resolved volume on the HR grid.
    lr : ndarray
        The low-resolution acquisition (or simulation).
    operator : callable
        The forward operator ``A`` (e.g. :class:`~bida_app.physics.SliceOperator` set to act
        along the through-plane axis), mapping HR to LR.

    Returns
    -------
    float
        0 when ``sr`` reproduces ``lr`` exactly (e.g. for ``A⁺ lr``).

    Examples
    --------
    >>> avg = lambda v: v.reshape(2, 2).mean(axis=1)
    >>> consistency_residual(np.array([1.0, 3.0, 2.0, 2.0]), np.array([2.0, 2.0]), avg)
    0.0
    """
    lr = np.asarray(lr, dtype=np.float64)
    pred = np.asarray(operator(np.asarray(sr, dtype=np.float64)), dtype=np.float64)
    if pred.shape != lr.shape:
        raise ValueError(f"A(sr) has shape {pred.shape}, the LR volume {lr.shape}")
    norm = float(np.linalg.norm(lr))
    if norm == 0.0:
        raise ValueError("the LR volume is all zeros")
    return float(np.linalg.norm(pred - lr)) / norm
