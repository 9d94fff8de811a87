"""Image-quality figures that need no ground truth, and robust outlier flags.

All metrics take a RAS volume (:func:`bida_app.reports.views.canonical`) and a head mask.

- ``snr``: mean head intensity over the noise level estimated in the air background
  (Dietrich et al. 2007: the standard deviation of Rayleigh-distributed magnitude noise is
  0.655 σ). NaN when there is no usable background (masked or zero-filled air).
- ``cnr``: the head's voxels are split in two classes by Otsu's threshold (e.g. CSF/tissue in
  T2w); ``|μ_hi − μ_lo| / sqrt(σ_bg² + σ_lo² + σ_hi²)`` (the form MRIQC's CNR uses).
- ``sharpness``: mean absolute gradient (per mm) along the through-plane axis over the mean
  absolute gradient along the in-plane axes, inside the head. Interpolation blurs the
  through-plane direction (ratio < 1); a good SR result has a ratio near 1.
- ``jitter_through`` / ``jitter_inplane``: slice-to-slice intensity inconsistency: mean
  absolute second difference of the per-slice mean head intensity, relative to the mean, along
  the through-plane axis and (worst of) the two in-plane axes. Slice-wise 2D processing shows
  up as jitter across the planes it processed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..preprocess.n4 import otsu_threshold  # noqa: F401 - one Otsu for bida

#: Rayleigh noise: std of the magnitude background = RAYLEIGH_STD * sigma.
RAYLEIGH_STD = float(np.sqrt(2.0 - np.pi / 2.0))
#: Slices whose head area is below this fraction of the largest are ignored by the jitter.
MIN_SLICE_AREA = 0.2


def head_mask(
    volume: np.ndarray, zooms: np.ndarray, step_mm: float = 0.3, max_voxels: int = 2_000_000
) -> np.ndarray:
    """Rough head mask of a RAS volume (:func:`bida_app.preprocess.n4.rough_head_mask`).

    Volumes of more than ``max_voxels`` voxels (fine SR grids) are subsampled to about
    ``step_mm`` voxels for speed and the mask is brought back by nearest neighbour. Falls
    back to a linear Otsu threshold for images without positive voxels.

    Examples
    --------
    >>> vol = np.zeros((30, 30, 30), np.float32); vol[8:22, 6:24, 10:20] = 100.0
    >>> vol += np.random.default_rng(0).uniform(0.5, 1.0, vol.shape).astype(np.float32)
    >>> m = head_mask(vol, np.full(3, 0.1))
    >>> round(float(m[8:22, 6:24, 10:20].mean()), 2), bool(m[:6].any())
    (1.0, False)
    """
    import nibabel as nib

    from ..errors import BadDataError
    from ..preprocess.n4 import rough_head_mask

    zooms = np.asarray(zooms, dtype=np.float64)
    steps = np.maximum(1, np.round(step_mm / zooms)).astype(int)
    if volume.size <= max_voxels:
        steps[:] = 1
    small = volume[:: steps[0], :: steps[1], :: steps[2]]
    affine = np.diag([*(zooms * steps), 1.0])
    try:
        mask = rough_head_mask(nib.Nifti1Image(np.asarray(small), affine)).get_fdata() > 0
    except BadDataError:
        mask = small > otsu_threshold(small)
    index = [
        np.clip(np.round(np.arange(n) / s).astype(int), 0, m - 1)
        for n, s, m in zip(volume.shape, steps, mask.shape, strict=True)
    ]
    return mask[np.ix_(*index)]


def _background(mask: np.ndarray) -> np.ndarray:
    return ~ndimage.binary_dilation(mask, iterations=3)


def snr(volume: np.ndarray, mask: np.ndarray) -> float:
    """Mean head intensity over the Rayleigh-corrected background noise (NaN if no noise).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> vol = np.abs(rng.normal(0, 1, (40, 40, 40)) + 1j * rng.normal(0, 1, (40, 40, 40)))
    >>> mask = np.zeros(vol.shape, bool); mask[10:30, 10:30, 10:30] = True
    >>> vol[mask] += 100.0
    >>> 95 < snr(vol, mask) < 105  # mean ~101.3, sigma = 1
    True
    """
    bg = volume[_background(mask)]
    head = volume[ndimage.binary_erosion(mask)] if mask.sum() > 27 else volume[mask]
    if bg.size < 100 or head.size == 0:
        return float("nan")
    sigma = float(np.std(bg)) / RAYLEIGH_STD
    return float(np.mean(head) / sigma) if sigma > 0 else float("nan")


def cnr(volume: np.ndarray, mask: np.ndarray) -> float:
    """Contrast of the two Otsu classes of the head over their and the background's noise.

    Examples
    --------
    >>> vol = np.zeros((20, 20, 20)); vol[5:15, 5:15, 5:10] = 2.0; vol[5:15, 5:15, 10:15] = 4.0
    >>> mask = vol > 0
    >>> cnr(vol, mask) > 100  # noise-free: very large contrast to noise
    True
    """
    head = volume[mask]
    if head.size < 2:
        return float("nan")
    t = otsu_threshold(head)
    lo, hi = head[head <= t], head[head > t]
    if lo.size == 0 or hi.size == 0:
        return float("nan")
    bg = volume[_background(mask)]
    var_bg = float(np.var(bg)) if bg.size >= 100 else 0.0
    noise = np.sqrt(var_bg + np.var(lo) + np.var(hi))
    return float(abs(np.mean(hi) - np.mean(lo)) / max(noise, 1e-12))


def sharpness(volume: np.ndarray, mask: np.ndarray, zooms: np.ndarray, through: int) -> float:
    """Mean |gradient| per mm along ``through`` over the mean along the in-plane axes.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = rng.normal(size=(16, 16, 16))
    >>> blurred = np.asarray(__import__("scipy").ndimage.gaussian_filter1d(x, 2.0, axis=1))
    >>> mask = np.ones(x.shape, bool)
    >>> sharpness(blurred, mask, np.ones(3), 1) < 0.5 < sharpness(x, mask, np.ones(3), 1)
    True
    """
    region = ndimage.binary_dilation(mask, iterations=1) if mask.any() else np.ones_like(mask)
    grads = []
    for axis in range(3):
        g = np.abs(np.diff(volume.astype(np.float32), axis=axis)) / np.float32(zooms[axis])
        keep = np.take(region, np.arange(volume.shape[axis] - 1), axis=axis)
        grads.append(float(g[keep].mean(dtype=np.float64)) if keep.any() else float("nan"))
    inplane = np.mean([grads[a] for a in range(3) if a != through])
    return float(grads[through] / inplane) if inplane > 0 else float("nan")


def slice_jitter(volume: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """Mean |second difference| of per-slice mean head intensity along ``axis``, relative.

    Examples
    --------
    >>> vol = np.ones((8, 8, 8)); mask = np.ones(vol.shape, bool)
    >>> slice_jitter(vol, mask, 0)
    0.0
    >>> vol[::2] *= 1.1  # alternating slice intensities
    >>> round(slice_jitter(vol, mask, 0), 3)
    0.095
    """
    other = tuple(a for a in range(3) if a != axis)
    area = mask.sum(axis=other)
    if area.max() == 0:
        return float("nan")
    means = (volume * mask).sum(axis=other) / np.maximum(area, 1)
    means = means[area >= MIN_SLICE_AREA * area.max()]
    if means.size < 3 or np.mean(means) == 0:
        return float("nan")
    d2 = means[1:-1] - (means[:-2] + means[2:]) / 2.0
    return float(np.mean(np.abs(d2)) / abs(np.mean(means)))


def image_quality(
    volume: np.ndarray, zooms: np.ndarray, through: int, mask: np.ndarray | None = None
) -> dict[str, float]:
    """All metrics of an output volume (RAS) whose slice-select axis is ``through``."""
    mask = head_mask(volume, zooms) if mask is None else mask
    inplane = [slice_jitter(volume, mask, a) for a in range(3) if a != through]
    return {
        "snr": snr(volume, mask),
        "cnr": cnr(volume, mask),
        "sharpness": sharpness(volume, mask, zooms, through),
        "jitter_through": slice_jitter(volume, mask, through),
        "jitter_inplane": float(np.nanmax(inplane)) if np.isfinite(inplane).any() else np.nan,
    }


def input_quality(volume: np.ndarray, zooms: np.ndarray) -> dict[str, float]:
    """SNR and CNR of a thick-slice input (RAS volume)."""
    mask = head_mask(volume, zooms)
    return {"snr": snr(volume, mask), "cnr": cnr(volume, mask)}


def robust_outliers(values: np.ndarray, z: float = 3.0, min_count: int = 5) -> np.ndarray:
    """Flag outliers: robust z-score (median/MAD) above ``z``, or the IQR rule if MAD is 0.

    NaNs are never flagged; fewer than ``min_count`` finite values flag nothing.

    Examples
    --------
    >>> robust_outliers(np.array([1.0, 1.1, 0.9, 1.05, 0.95, 5.0, np.nan])).tolist()
    [False, False, False, False, False, True, False]
    >>> robust_outliers(np.array([1.0, 1.0, 1.0, 1.0, 2.0])).tolist()
    [False, False, False, False, True]
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    flags = np.zeros(values.shape, dtype=bool)
    if finite.sum() < min_count:
        return flags
    x = values[finite]
    med = np.median(x)
    mad = 1.4826 * np.median(np.abs(x - med))
    if mad > 0:
        flags[finite] = np.abs(x - med) / mad > z
    else:
        q1, q3 = np.percentile(x, [25, 75])
        iqr = q3 - q1
        flags[finite] = (x < q1 - 1.5 * iqr) | (x > q3 + 1.5 * iqr)
    return flags
