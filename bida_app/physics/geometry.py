"""Through-plane geometry: where the thick slices sit on the high-resolution grid.

This module is the single notion of slice position in bida. For an LR volume with ``n_lr``
slices at ``spacing_mm`` along one voxel axis, the HR grid spans the same extent
(``n_lr * spacing_mm``), is centred on the same midpoint, and has voxels of ``hr_mm``.
Positions are expressed in *HR index units* (float), so slice ``k`` of the LR image sits at
``lr_centres[k]`` on the HR axis, and the HR affine maps that index to the same world point
as the LR affine maps ``k``.

Two constructors share that convention: :meth:`SliceGeometry.from_lr` builds the HR grid for
given LR slices (super-resolution), :meth:`SliceGeometry.from_hr` places ``floor(extent /
spacing)`` slices centred on a given HR grid (simulation). :func:`lr_centres_from_affines`
recovers the same positions from the two images' affines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SliceGeometry:
    """Geometry of one through-plane axis.

    Parameters
    ----------
    axis : int
        Voxel axis (0, 1 or 2) of the through-plane direction.
    n_lr : int
        Number of acquired slices.
    spacing_mm : float
        Distance between slice centres.
    thickness_mm : float
        Slice thickness (FWHM of the profile).
    hr_mm : float
        Voxel size of the HR grid along the axis.
    n_hr : int
        Number of HR voxels along the axis.
    """

    axis: int
    n_lr: int
    spacing_mm: float
    thickness_mm: float
    hr_mm: float
    n_hr: int

    @classmethod
    def from_lr(
        cls, axis: int, n_lr: int, spacing_mm: float, thickness_mm: float, hr_mm: float
    ) -> SliceGeometry:
        """HR grid covering the LR slices' span (``n_lr * spacing_mm``) at ``hr_mm``."""
        if n_lr < 1 or spacing_mm <= 0 or thickness_mm <= 0 or hr_mm <= 0:
            raise ValueError("slice geometry needs positive counts and sizes")
        n_hr = max(1, int(round(n_lr * spacing_mm / hr_mm)))
        return cls(axis, int(n_lr), float(spacing_mm), float(thickness_mm), float(hr_mm), n_hr)

    @classmethod
    def from_hr(
        cls, axis: int, n_hr: int, spacing_mm: float, thickness_mm: float, hr_mm: float
    ) -> SliceGeometry:
        """As many LR slices as fit in the HR extent (``floor(n_hr * hr_mm / spacing_mm)``).

        The slices are centred on the HR grid's midpoint, as in :meth:`from_lr`.

        Examples
        --------
        >>> g = SliceGeometry.from_hr(1, 64, 0.5, 0.5, 0.2)
        >>> g.n_lr, [round(float(c), 2) for c in g.lr_centres[:3]]
        (25, [1.5, 4.0, 6.5])
        """
        if n_hr < 1 or spacing_mm <= 0 or thickness_mm <= 0 or hr_mm <= 0:
            raise ValueError("slice geometry needs positive counts and sizes")
        n_lr = int(np.floor(n_hr * hr_mm / spacing_mm * (1 + 1e-6)))
        if n_lr < 1:
            raise ValueError(
                f"slice spacing {spacing_mm} mm exceeds the HR extent {n_hr * hr_mm:g} mm"
            )
        return cls(axis, n_lr, float(spacing_mm), float(thickness_mm), float(hr_mm), int(n_hr))

    @property
    def factor(self) -> float:
        """Super-resolution factor ``spacing / hr``."""
        return self.spacing_mm / self.hr_mm

    @property
    def hr_origin_in_lr_index(self) -> float:
        """LR (fractional) index of HR voxel 0 along the axis."""
        mid = (self.n_lr - 1) / 2.0 * self.spacing_mm
        return (mid - (self.n_hr - 1) / 2.0 * self.hr_mm) / self.spacing_mm

    @property
    def lr_centres(self) -> np.ndarray:
        """Centres of the LR slices in HR index units (float array of length ``n_lr``)."""
        k = np.arange(self.n_lr, dtype=np.float64)
        return (k - self.hr_origin_in_lr_index) * self.spacing_mm / self.hr_mm

    def hr_affine(self, lr_affine: np.ndarray) -> np.ndarray:
        """Affine of the HR grid, such that HR index ``lr_centres[k]`` maps where LR ``k`` does."""
        scale = np.eye(4)
        scale[self.axis, self.axis] = self.hr_mm / self.spacing_mm
        scale[self.axis, 3] = self.hr_origin_in_lr_index
        return np.asarray(lr_affine, dtype=np.float64) @ scale

    def lr_affine(self, hr_affine: np.ndarray) -> np.ndarray:
        """Affine of the LR slices, the inverse of :meth:`hr_affine`."""
        scale = np.eye(4)
        scale[self.axis, self.axis] = self.spacing_mm / self.hr_mm
        scale[self.axis, 3] = self.lr_centres[0]
        return np.asarray(hr_affine, dtype=np.float64) @ scale

    def lr_shape(self, hr_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the LR volume for an HR volume of ``hr_shape``."""
        shape = list(hr_shape)
        shape[self.axis] = self.n_lr
        return tuple(shape)

    def hr_shape(self, lr_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the HR volume for an LR volume of ``lr_shape``."""
        shape = list(lr_shape)
        shape[self.axis] = self.n_hr
        return tuple(shape)

    def as_dict(self) -> dict:
        """Parameters to record in sidecars."""
        return {
            "ThroughPlaneAxis": self.axis,
            "SliceSpacing_mm": self.spacing_mm,
            "SliceThickness_mm": self.thickness_mm,
            "HRVoxelSize_mm": self.hr_mm,
            "Factor": round(self.factor, 6),
            "NumLRSlices": self.n_lr,
            "NumHRSlices": self.n_hr,
        }


def lr_centres_from_affines(
    hr_affine: np.ndarray, lr_affine: np.ndarray, n_lr: int, lr_axis: int, hr_axis: int
) -> np.ndarray:
    """Positions of LR slice centres along ``hr_axis`` of an HR grid, from the two affines.

    Used when both images exist (simulation, evaluation): LR voxel ``k`` along ``lr_axis``
    is mapped to world and back into HR voxel coordinates.
    """
    idx = np.zeros((4, n_lr))
    idx[lr_axis] = np.arange(n_lr)
    idx[3] = 1.0
    hr_idx = np.linalg.solve(np.asarray(hr_affine, float), np.asarray(lr_affine, float) @ idx)
    return hr_idx[hr_axis]


WORLD_AXES = {"LR": "LR", "AP": "PA", "SI": "IS"}
"""World (RAS) axis names accepted by :func:`voxel_axis` and the letters that denote them."""


def voxel_axis(affine: np.ndarray, world_axis: str) -> int:
    """Voxel axis closest to a world axis (``"LR"``, ``"AP"`` or ``"SI"``).

    Works whatever the voxel order on disk (it reads :func:`nibabel.aff2axcodes`).

    Examples
    --------
    >>> sar = np.array([[0, 0, 0.2, 0], [0, 0.2, 0, 0], [0.2, 0, 0, 0], [0, 0, 0, 1]])
    >>> voxel_axis(sar, "SI"), voxel_axis(sar, "AP"), voxel_axis(sar, "LR")
    (0, 1, 2)
    """
    import nibabel as nib

    key = world_axis.upper()
    if key not in WORLD_AXES:
        raise ValueError(f"unknown world axis {world_axis!r}; choose from {sorted(WORLD_AXES)}")
    codes = nib.aff2axcodes(np.asarray(affine, dtype=np.float64))
    hits = [i for i, c in enumerate(codes) if c is not None and c in WORLD_AXES[key]]
    if len(hits) != 1:
        raise ValueError(f"cannot find the {key} axis in an image oriented {codes}")
    return hits[0]
