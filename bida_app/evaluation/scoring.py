"""Scores of one super-resolved volume: whole field and interior, residual, cDSC, mask QC.

* **PSNR** and **SSIM** over the brain field of view: the reference's zero padding is
  cropped away first (:func:`~bida_app.evaluation.metrics.crop_to_foreground`), as the
  paper does for its mice;
* **interior** PSNR/SSIM: the same, over the HR head mask eroded by ``interior_mm`` (1 mm by
  default), so the brain outline, where any method that sharpens edges wins, does not
  dominate; the peak of both PSNRs is the whole field's range;
* **residual**: ``‖A(SR) − LR‖ / ‖LR‖`` with the operator that simulated the slices;
* **cDSC**: Dice of the skull-strip mask of SR against that of HR.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..physics.operator import SliceOperator
from .metrics import consistency_residual, crop_to_foreground, dice, foreground_box, psnr, ssim

#: An HR skull-strip mask is implausible below/above these fractions of the field of view,
#: or when its largest connected part holds less than this share of it (fragmented).
MASK_FRACTION_RANGE = (0.005, 0.8)
MASK_LARGEST_SHARE = 0.9


def head_mask(hr: np.ndarray, voxel_mm: np.ndarray) -> np.ndarray:
    """Foreground (head or brain) of an HR volume: the rough head mask of the N4 step."""
    import nibabel as nib

    from ..preprocess.n4 import rough_head_mask

    affine = np.diag([*np.asarray(voxel_mm, float), 1.0])
    img = nib.Nifti1Image(np.asarray(hr, np.float32), affine)
    return np.asarray(rough_head_mask(img).dataobj, bool)


def erode_mm(mask: np.ndarray, voxel_mm: np.ndarray, mm: float) -> np.ndarray:
    """``mask`` eroded by an ellipsoid of radius ``mm`` (per-axis voxel sizes).

    Examples
    --------
    >>> m = np.zeros((11, 11, 11), bool); m[1:10, 1:10, 1:10] = True
    >>> int(erode_mm(m, np.array([1.0, 1.0, 1.0]), 2.0).sum())
    125
    """
    if mm <= 0:
        return np.asarray(mask, bool)
    radii = mm / np.asarray(voxel_mm, float)
    half = np.floor(radii).astype(int)
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    element = sum((g / max(r, 1e-6)) ** 2 for g, r in zip(grids, radii, strict=True)) <= 1.0
    return ndimage.binary_erosion(np.asarray(mask, bool), structure=element)


def score_volume(
    sr: np.ndarray,
    hr: np.ndarray,
    *,
    lr: np.ndarray | None = None,
    operator: SliceOperator | None = None,
    box: tuple[slice, ...] | None = None,
    interior: np.ndarray | None = None,
    sr_mask: np.ndarray | None = None,
    hr_mask: np.ndarray | None = None,
) -> dict[str, float]:
    """PSNR, SSIM (whole field and interior), residual and cDSC of an SR volume.

    Parameters
    ----------
    sr, hr : ndarray
        Super-resolved and reference volumes (same grid).
    lr, operator : ndarray and SliceOperator, optional
        Thick slices and the operator that made them, for the residual (NaN without).
    box : tuple of slice, optional
        Region scored (the slices' span); PSNR/SSIM further crop ``hr``'s zero padding.
    interior : ndarray of bool, optional
        Interior voxels (eroded head mask) for ``psnr_interior``/``ssim_interior`` (NaN
        without, or when the interior inside ``box`` is empty).
    sr_mask, hr_mask : ndarray, optional
        Skull-strip masks for cDSC (NaN without).

    Returns
    -------
    dict
        ``psnr`` (dB; ``inf`` for identical volumes), ``ssim``, ``psnr_interior``,
        ``ssim_interior``, ``cdsc``, ``residual``.

    Examples
    --------
    >>> hr = np.pad(np.random.default_rng(0).random((6, 6, 6)) + 1, 2)
    >>> s = score_volume(hr, hr, sr_mask=hr > 0, hr_mask=hr > 0, interior=hr > 0)
    >>> s["psnr"], s["ssim"], s["cdsc"], s["psnr_interior"]
    (inf, 1.0, 1.0, inf)
    """
    sr, hr = np.asarray(sr, np.float64), np.asarray(hr, np.float64)
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} are not on the same grid")
    box = box or (slice(None),) * hr.ndim
    x, ref = crop_to_foreground(sr[box], hr[box])
    out = {
        "psnr": psnr(x, ref),
        "ssim": ssim(x, ref),
        "psnr_interior": math.nan,
        "ssim_interior": math.nan,
        "cdsc": math.nan,
        "residual": math.nan,
    }
    if interior is not None:
        inner = np.asarray(interior, bool)[box][foreground_box(hr[box])]
        if inner.any():
            peak = float(ref.max() - ref.min())
            out["psnr_interior"] = psnr(x, ref, data_range=peak, mask=inner)
            out["ssim_interior"] = ssim(x, ref, data_range=peak, mask=inner)
    if lr is not None and operator is not None:
        out["residual"] = consistency_residual(sr, lr, operator)
    if sr_mask is not None and hr_mask is not None:
        out["cdsc"] = dice(np.asarray(sr_mask)[box], np.asarray(hr_mask)[box])
    return out


def mask_quality(mask: np.ndarray, reference: np.ndarray | None = None) -> dict[str, object]:
    """How far an HR skull-strip mask can be trusted as the cDSC reference.

    Parameters
    ----------
    mask : ndarray
        The network's mask of the HR volume.
    reference : ndarray, optional
        A reference brain mask on the same grid (e.g. an atlas mask).

    Returns
    -------
    dict
        ``fraction`` of the field of view, ``components``, ``largest_share`` (of the mask
        in its largest connected part), ``dice_ref`` (NaN without a reference),
        ``plausible`` (bool) and ``problems`` (list of one-line reasons).

    Examples
    --------
    >>> m = np.zeros((20, 20, 20), bool); m[5:15, 5:15, 5:15] = True
    >>> q = mask_quality(m, m)
    >>> q["plausible"], q["components"], q["dice_ref"]
    (True, 1, 1.0)
    >>> mask_quality(np.zeros((20, 20, 20), bool))["problems"]
    ['the mask is empty']
    """
    m = np.asarray(mask, bool)
    fraction = float(m.mean())
    labels, n = ndimage.label(m)
    largest = float(np.bincount(labels.ravel())[1:].max() / m.sum()) if n else 0.0
    problems = []
    if not m.any():
        problems.append("the mask is empty")
    else:
        lo, hi = MASK_FRACTION_RANGE
        if not lo <= fraction <= hi:
            problems.append(f"covers {fraction:.1%} of the field of view")
        if largest < MASK_LARGEST_SHARE:
            problems.append(f"fragmented ({n} parts, the largest holds {largest:.0%})")
    dice_ref = math.nan
    if reference is not None:
        dice_ref = dice(m, np.asarray(reference) > 0)
        if dice_ref < 0.8:
            problems.append(f"Dice {dice_ref:.2f} against the reference mask")
    return {
        "fraction": fraction,
        "components": int(n),
        "largest_share": largest,
        "dice_ref": dice_ref,
        "plausible": not problems,
        "problems": problems,
    }
