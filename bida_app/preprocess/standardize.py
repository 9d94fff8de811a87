"""Intensity standardization to [-1, 1] on the model grid, and its exact inverse.

As in the paper: intensities are clipped at the ``lower``/``upper`` percentiles (1st/99th) and
mapped linearly to [-1, 1]; the volume is then centre-padded with -1 (the background value)
to the model grid (144×144×64 by default).

Percentiles are taken over all finite voxels, background included (the paper's recipe), or
over the voxels of ``mask`` when one is given (then background below the lower percentile is
clipped to -1). Non-finite voxels are set to -1 and counted.

Padding and cropping are recorded per axis as a signed pair ``(before, after)`` with
``before + n + after == grid``: positive numbers are voxels of -1 padding added on that side,
negative numbers voxels cropped away. Original voxel ``i`` sits at grid index ``i + before``.
:func:`pad_widths` computes the centred pair (an odd extra voxel goes *after*), and the lead
can reuse it for an axis whose length changes later (the super-resolved through-plane axis).

The inverse, :func:`destandardize`, removes the padding, puts back cropped-away voxels as
background (the lower clip value) and undoes the linear map. Voxels that were clipped come
back at the clip values; all others come back to within float32 rounding
(≈ 1e-7 of the clip range).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import BadDataError

LOGGER = logging.getLogger(__name__)

#: The model grid (RAS voxel order) at 0.2 mm.
MODEL_GRID = (144, 144, 64)
#: Intensity percentiles clipped before scaling to [-1, 1] (the paper's 1st/99th); part of the
#: preprocessing contract a prior's card records and inference reads back.
CLIP_PERCENTILES = (1.0, 99.0)
CROP_MODES = ("centre", "brain")


def pad_widths(n: int, target: int, centre: float | None = None) -> tuple[int, int]:
    """Signed ``(before, after)`` placing an axis of ``n`` voxels on ``target`` voxels.

    Parameters
    ----------
    n : int
        Length of the axis.
    target : int
        Length on the grid.
    centre : float, optional
        Only used when ``n > target``: index (in the ``n`` axis) the cropped window is
        centred on, clamped so the window stays inside; default the axis centre.

    Returns
    -------
    tuple of int
        ``(before, after)``, positive = padding, negative = cropping;
        ``before + n + after == target``.

    Examples
    --------
    >>> pad_widths(120, 144), pad_widths(5, 8), pad_widths(144, 64)
    ((12, 12), (1, 2), (-40, -40))
    >>> pad_widths(144, 64, centre=30.0)
    (0, -80)
    """
    n, target = int(n), int(target)
    if n < 1 or target < 1:
        raise ValueError("lengths must be positive")
    diff = target - n
    if diff >= 0 or centre is None:
        before = diff // 2 if diff >= 0 else -((-diff) // 2)
        return before, diff - before
    start = int(np.floor(centre - (target - 1) / 2.0 + 0.5))
    start = min(max(start, 0), n - target)
    return -start, diff + start


def grid_affine(affine: np.ndarray, pads: Sequence[tuple[int, int]]) -> np.ndarray:
    """Affine of the padded/cropped grid, given the affine of the unpadded volume.

    Examples
    --------
    >>> grid_affine(np.diag([0.2, 0.2, 0.2, 1.0]), [(12, 12), (0, 0), (-40, -40)])[:3, 3]
    array([-2.4,  0. ,  8. ])
    """
    shift = np.eye(4)
    shift[:3, 3] = [-float(before) for before, _ in pads[:3]]
    return np.asarray(affine, dtype=np.float64) @ shift


def _place(
    src: np.ndarray, befores: Sequence[int], out_shape: Sequence[int], fill: float
) -> np.ndarray:
    """Put ``src`` into a ``fill``-ed array so that index ``i`` lands at ``i + before``."""
    out = np.full(tuple(out_shape), fill, dtype=src.dtype)
    src_sl, dst_sl = [], []
    for n, m, before in zip(src.shape, out_shape, befores, strict=True):
        lo, hi = max(0, -before), min(n, m - before)
        if hi <= lo:
            return out
        src_sl.append(slice(lo, hi))
        dst_sl.append(slice(lo + before, hi + before))
    out[tuple(dst_sl)] = src[tuple(src_sl)]
    return out


@dataclass(frozen=True)
class StandardizeParams:
    """Everything :func:`destandardize` needs; JSON-serialisable with :meth:`to_dict`.

    Attributes
    ----------
    shape : tuple of int
        Shape of the input volume.
    pads : tuple of (int, int)
        Signed ``(before, after)`` per axis (positive pad, negative crop).
    lower, upper : float
        Percentiles used for clipping.
    clip_low, clip_high : float
        Intensities at those percentiles (mapped to -1 and +1).
    crop : str
        ``"centre"`` or ``"brain"``: how an axis longer than the grid was cropped.
    masked : bool
        Whether the percentiles came from a mask.
    n_nonfinite : int
        Number of non-finite input voxels (set to -1).
    """

    shape: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    lower: float
    upper: float
    clip_low: float
    clip_high: float
    crop: str = "centre"
    masked: bool = False
    n_nonfinite: int = field(default=0)

    @property
    def grid(self) -> tuple[int, ...]:
        """Shape of the standardized array."""
        return tuple(n + b + a for n, (b, a) in zip(self.shape, self.pads, strict=True))

    @property
    def crops(self) -> tuple[tuple[int, int], ...]:
        """Voxels cropped away per axis, ``(before, after)``, non-negative."""
        return tuple((max(-b, 0), max(-a, 0)) for b, a in self.pads)

    @property
    def scale(self) -> float:
        """Slope of the intensity map, ``2 / (clip_high - clip_low)``."""
        return 2.0 / (self.clip_high - self.clip_low)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary for JSON (derived ``grid``, ``crops``, ``scale`` included)."""
        return {
            "shape": list(self.shape),
            "pads": [list(p) for p in self.pads],
            "lower": self.lower,
            "upper": self.upper,
            "clip_low": self.clip_low,
            "clip_high": self.clip_high,
            "crop": self.crop,
            "masked": self.masked,
            "n_nonfinite": self.n_nonfinite,
            "grid": list(self.grid),
            "crops": [list(c) for c in self.crops],
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StandardizeParams:
        """Inverse of :meth:`to_dict` (derived keys are ignored)."""
        return cls(
            shape=tuple(int(v) for v in d["shape"]),
            pads=tuple((int(b), int(a)) for b, a in d["pads"]),
            lower=float(d["lower"]),
            upper=float(d["upper"]),
            clip_low=float(d["clip_low"]),
            clip_high=float(d["clip_high"]),
            crop=str(d.get("crop", "centre")),
            masked=bool(d.get("masked", False)),
            n_nonfinite=int(d.get("n_nonfinite", 0)),
        )

    def with_axis(
        self, axis: int, n_before: int, pads: tuple[int, int] | None = None
    ) -> StandardizeParams:
        """Same parameters with one axis of length ``n_before`` placed by ``pads``.

        Parameters
        ----------
        axis : int
            The axis to replace (e.g. the through-plane axis after super-resolution).
        n_before : int
            Its length before padding.
        pads : (int, int), optional
            Signed placement; default :func:`pad_widths` ``(n_before, grid[axis])``.

        Examples
        --------
        >>> p = StandardizeParams((144, 24, 144), ((0, 0), (0, 0), (-40, -40)), 1, 99, 0., 1.)
        >>> p.with_axis(1, 120, pad_widths(120, 144)).grid
        (144, 144, 64)
        """
        if pads is None:
            pads = pad_widths(n_before, self.grid[axis])
        shape, all_pads = list(self.shape), list(self.pads)
        shape[axis], all_pads[axis] = int(n_before), (int(pads[0]), int(pads[1]))
        return replace(self, shape=tuple(shape), pads=tuple(all_pads))


def standardize(
    data: np.ndarray,
    grid: Sequence[int | None] | None = MODEL_GRID,
    *,
    lower: float = CLIP_PERCENTILES[0],
    upper: float = CLIP_PERCENTILES[1],
    mask: np.ndarray | None = None,
    crop: str = "centre",
    dtype: np.dtype | type = np.float32,
) -> tuple[np.ndarray, StandardizeParams]:
    """Clip at percentiles, map linearly to [-1, 1] and centre-pad/crop to ``grid``.

    Parameters
    ----------
    data : ndarray
        Volume (RAS voxel order in bida).
    grid : sequence of int or None, optional
        Target shape; an entry ``None`` leaves that axis as it is; ``None`` pads nothing.
    lower, upper : float
        Clipping percentiles (0-100).
    mask : ndarray of bool, optional
        Voxels the percentiles are computed from (default: all finite voxels).
    crop : {"centre", "brain"}
        How an axis longer than the grid is cropped: about its centre, or (``"brain"``) about
        the centre of mass of the mask when given, else of the brightest quarter of the
        foreground (voxels above 10 % of the clip range) — in T2w the brain and CSF, so that
        a FOV larger than the grid keeps the brain. Cropping always logs a warning.
    dtype : dtype
        Output dtype (float32 by default).

    Returns
    -------
    std : ndarray
        Standardized volume on the grid, background and padding -1.
    params : StandardizeParams
        What :func:`destandardize` needs.

    Raises
    ------
    BadDataError
        If the clip range is empty (constant image).

    Examples
    --------
    >>> x = np.linspace(0.0, 10.0, 4 * 5 * 6).reshape(4, 5, 6)
    >>> std, p = standardize(x, (6, 6, 6), lower=0, upper=100)
    >>> std.shape, float(std.min()), float(std.max()), p.pads
    ((6, 6, 6), -1.0, 1.0, ((1, 1), (0, 1), (0, 0)))
    >>> bool(np.allclose(destandardize(std, p), x, atol=1e-5))
    True
    """
    data = np.asarray(data)
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"need 0 <= lower < upper <= 100, got {lower}, {upper}")
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
    finite = np.isfinite(data)
    n_bad = int(data.size - np.count_nonzero(finite))
    select = finite if mask is None else finite & np.asarray(mask, dtype=bool)
    if not select.any():
        raise BadDataError("no finite voxels to standardize (empty mask or all NaN)")
    lo, hi = (float(v) for v in np.percentile(data[select], [lower, upper]))
    if not hi > lo:
        raise BadDataError(
            f"intensities are constant between the {lower:g} and {upper:g} percentiles "
            f"(value {lo:g}); cannot standardize"
        )
    values = np.where(finite, data, lo).astype(np.float64)
    np.clip(values, lo, hi, out=values)
    std = ((values - lo) * (2.0 / (hi - lo)) - 1.0).astype(dtype)
    if n_bad:
        LOGGER.warning("%d non-finite voxels set to background (-1)", n_bad)
    pads = _grid_pads(
        data.shape, grid, crop, select if mask is not None else _bright(values, lo, hi)
    )
    params = StandardizeParams(
        shape=tuple(int(n) for n in data.shape),
        pads=pads,
        lower=float(lower),
        upper=float(upper),
        clip_low=lo,
        clip_high=hi,
        crop=crop,
        masked=mask is not None,
        n_nonfinite=n_bad,
    )
    out = _place(std, [b for b, _ in pads], params.grid, -1.0)
    LOGGER.info(
        "standardized: clip [%.6g, %.6g] (%g/%g pct%s), shape %s -> %s, pads %s",
        lo,
        hi,
        lower,
        upper,
        ", masked" if mask is not None else "",
        params.shape,
        params.grid,
        [list(p) for p in pads],
    )
    return out, params


def _bright(clipped: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Brightest quarter of the foreground (above 10 % of the clip range): brain and CSF in T2w."""
    foreground = clipped > lo + 0.1 * (hi - lo)
    if not foreground.any():
        return foreground
    return clipped >= np.percentile(clipped[foreground], 75)


def _grid_pads(
    shape: tuple[int, ...],
    grid: Sequence[int | None] | None,
    crop: str,
    weights: np.ndarray,
) -> tuple[tuple[int, int], ...]:
    """Signed pads per axis; crops (centred on the centre of mass of ``weights``) warn."""
    if grid is None:
        return tuple((0, 0) for _ in shape)
    if len(grid) != len(shape):
        raise ValueError(f"grid {tuple(grid)} does not match data with {len(shape)} axes")
    centre = None
    if crop == "brain" and any(t is not None and n > t for n, t in zip(shape, grid, strict=True)):
        centre = ndimage.center_of_mass(weights) if weights.any() else None
    pads = []
    for axis, (n, target) in enumerate(zip(shape, grid, strict=True)):
        if target is None:
            pads.append((0, 0))
            continue
        pair = pad_widths(n, target, None if centre is None else centre[axis])
        if n > target:
            LOGGER.warning(
                "axis %d has %d voxels, more than the model grid's %d: cropping %d before and "
                "%d after (%s)",
                axis,
                n,
                target,
                -pair[0],
                -pair[1],
                "centred on the brain's centre of mass"
                if centre is not None
                else "about the FOV centre; crop='brain' centres on the brain",
            )
        pads.append(pair)
    return tuple(pads)


def destandardize(
    std: np.ndarray,
    params: StandardizeParams,
    *,
    axis_lengths: Mapping[int, int] | None = None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Undo :func:`standardize`: remove padding, restore cropped extent, undo the intensity map.

    Parameters
    ----------
    std : ndarray
        Array on the standardized grid (e.g. the super-resolved volume).
    params : StandardizeParams
        From :func:`standardize`.
    axis_lengths : mapping of int to int, optional
        ``{axis: n}`` for axes whose unpadded length is now ``n`` (e.g. the through-plane
        axis after super-resolution): that axis of ``std`` is unpadded with
        ``pad_widths(n, std.shape[axis])``. For another placement use
        :meth:`StandardizeParams.with_axis`.
    dtype : dtype
        Output dtype.

    Returns
    -------
    ndarray
        Volume of ``params.shape`` (with ``axis_lengths`` applied) in input intensities.
        Voxels that were cropped away come back as ``clip_low`` (background); clipped
        voxels come back at the clip values.

    Examples
    --------
    >>> p = StandardizeParams((3, 2, 2), ((1, 1), (1, 1), (0, 0)), 1, 99, 10.0, 30.0)
    >>> destandardize(np.zeros((5, 4, 2)), p)[:, 0, 0]
    array([20., 20., 20.], dtype=float32)
    >>> destandardize(np.zeros((5, 4, 2)), p, axis_lengths={0: 5}).shape
    (5, 2, 2)
    """
    std = np.asarray(std)
    if std.ndim != len(params.shape):
        raise ValueError(f"expected {len(params.shape)} axes, got shape {std.shape}")
    for axis, n in (axis_lengths or {}).items():
        params = params.with_axis(axis, n, pad_widths(n, std.shape[axis]))
    if tuple(std.shape) != params.grid:
        raise ValueError(
            f"array shape {tuple(std.shape)} does not match the standardized grid {params.grid}"
            " (pass axis_lengths for axes whose length changed)"
        )
    unpadded = _place(std, [-b for b, _ in params.pads], params.shape, -1.0)
    out = (unpadded.astype(np.float64) + 1.0) * ((params.clip_high - params.clip_low) / 2.0)
    return (out + params.clip_low).astype(dtype)
