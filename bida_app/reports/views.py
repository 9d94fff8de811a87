"""World-oriented 2D views of a run for QC figures (no plotting here).

Every view is taken on the super-resolved (SR) grid after :func:`nibabel.as_closest_canonical`,
so voxel axes are RAS (0 = L→R, 1 = P→A, 2 = I→S) and a slice shown with
``imshow(tile, origin="lower")`` is anatomically upright. Other images of the run (the
thick-slice input, the N4 bias field, the uncertainty map) are sampled onto the same SR slices
by nearest neighbour through their voxel-to-world affines, so the input appears as its thick
slices, aligned with the SR result.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

#: RAS axis normal to each anatomical plane.
PLANE_NORMAL = {"sagittal": 0, "coronal": 1, "axial": 2}
#: RAS axis index of each world axis name used in sidecars (``ThroughPlaneAxis.World``).
WORLD_AXIS = {"LR": 0, "AP": 1, "SI": 2}
#: Labels of the low and high end of each RAS axis.
AXIS_ENDS = (("L", "R"), ("P", "A"), ("I", "S"))


@dataclass(frozen=True)
class View:
    """A plane of the SR grid and the slices of it to show.

    Attributes
    ----------
    plane : str
        ``"sagittal"``, ``"coronal"`` or ``"axial"``.
    indices : tuple of int
        Slice indices along the plane's normal (RAS voxel axis of the canonical SR grid).
    crop : tuple of slice
        Crop of the tiles (rows, columns) around the head.
    """

    plane: str
    indices: tuple[int, ...]
    crop: tuple[slice, slice] = (slice(None), slice(None))

    @property
    def normal(self) -> int:
        """RAS axis normal to the plane."""
        return PLANE_NORMAL[self.plane]

    @property
    def axes(self) -> tuple[int, int]:
        """RAS axes shown horizontally and vertically."""
        horizontal, vertical = (a for a in range(3) if a != self.normal)
        return horizontal, vertical


def through_planes(world_axis: int) -> tuple[str, str]:
    """The two anatomical planes that contain the through-plane axis.

    Parameters
    ----------
    world_axis : int
        RAS axis of the slice-select direction (0 = L-R, 1 = A-P, 2 = S-I).

    Examples
    --------
    >>> through_planes(1)  # coronal slices (A-P through-plane)
    ('sagittal', 'axial')
    >>> through_planes(2), through_planes(0)
    (('sagittal', 'coronal'), ('axial', 'coronal'))
    """
    order = {0: ("axial", "coronal"), 1: ("sagittal", "axial"), 2: ("sagittal", "coronal")}
    return order[int(world_axis)]


def world_through_axis(img: nib.spatialimages.SpatialImage) -> int:
    """RAS axis of the largest voxel spacing of ``img`` (its slice-select direction).

    Examples
    --------
    >>> img = nib.Nifti1Image(np.zeros((4, 3, 5)), np.diag([-0.2, 0.2, 1.0, 1.0]))
    >>> world_through_axis(img)
    2
    """
    zooms = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    voxel_axis = int(np.argmax(zooms))
    return int(np.argmax(np.abs(img.affine[:3, voxel_axis])))


def canonical(img: nib.spatialimages.SpatialImage) -> tuple[np.ndarray, np.ndarray]:
    """Data (float32, non-finite set to 0) and affine of ``img`` in RAS voxel order."""
    can = nib.as_closest_canonical(img)
    data = np.asarray(can.dataobj, dtype=np.float32)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0), can.affine


def slice_tile(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """2D slice of a RAS volume oriented for ``imshow(tile, origin="lower")``.

    Rows run along the vertical axis (S or A up), columns along the horizontal one.

    Examples
    --------
    >>> vol = np.arange(24).reshape(2, 3, 4)
    >>> slice_tile(vol, "sagittal", 1).shape  # rows = I->S (4), columns = P->A (3)
    (4, 3)
    """
    taken = np.take(volume, index, axis=PLANE_NORMAL[plane])
    return np.ascontiguousarray(taken.T)


def sample_tile(
    img: nib.spatialimages.SpatialImage,
    grid_affine: np.ndarray,
    grid_shape: tuple[int, int, int],
    plane: str,
    index: int,
) -> np.ndarray:
    """Nearest-neighbour sample of ``img`` on one slice of a RAS grid.

    Parameters
    ----------
    img : SpatialImage
        Source image in any voxel order (e.g. the thick-slice input).
    grid_affine, grid_shape : ndarray, tuple
        Canonical (RAS) SR grid.
    plane, index : str, int
        The slice of the grid.

    Returns
    -------
    ndarray
        Tile as :func:`slice_tile` orients it; NaN outside the source's field of view.

    Examples
    --------
    >>> lr = nib.Nifti1Image(np.arange(3.0)[None, :, None] * np.ones((2, 3, 2)),
    ...                      np.diag([1.0, 3.0, 1.0, 1.0]))
    >>> sample_tile(lr, np.eye(4), (2, 9, 2), "sagittal", 0)[0].tolist()  # 3 thick slices
    [0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, nan]
    """
    normal = PLANE_NORMAL[plane]
    ranges = [np.arange(n, dtype=np.float64) for n in grid_shape]
    ranges[normal] = np.array([float(index)])
    ijk = np.stack([g.ravel() for g in np.meshgrid(*ranges, indexing="ij")])
    to_src = np.linalg.inv(img.affine) @ np.asarray(grid_affine, dtype=np.float64)
    src = to_src[:3, :3] @ ijk + to_src[:3, 3:4]
    data = np.asanyarray(img.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    shape = np.array(data.shape[:3])[:, None]
    near = np.floor(src + 0.5).astype(np.int64)
    inside = np.all((src > -0.5 - 1e-6) & (src < shape - 0.5 + 1e-6), axis=0)
    near = np.clip(near, 0, shape - 1)
    values = np.asarray(data[near[0], near[1], near[2]], dtype=np.float32)
    values[~inside] = np.nan
    out_shape = [n for a, n in enumerate(grid_shape) if a != normal]
    return np.ascontiguousarray(values.reshape(out_shape).T)


def choose_view(
    mask: np.ndarray, plane: str, n_slices: int = 6, margin: int = 2, spread: float = 0.6
) -> View:
    """Slices through the bulk of the head and a crop around it.

    Slices sit at evenly spaced quantiles of the head's voxels along the plane's normal (the
    central ``spread`` of its mass), so they avoid the thin ends of the head.

    Parameters
    ----------
    mask : ndarray of bool
        Head mask on the canonical SR grid (all-False: the whole grid is used).
    plane : str
        Anatomical plane.
    n_slices : int
        Number of slices.
    margin : int
        Voxels kept around the head in the crop.
    spread : float
        Fraction of the head's voxels spanned by the slices.

    Examples
    --------
    >>> m = np.zeros((10, 12, 8), bool); m[2:8, 3:9, 1:7] = True
    >>> v = choose_view(m, "sagittal", n_slices=3, margin=1)
    >>> v.indices, v.crop
    ((3, 4, 6), (slice(0, 8, None), slice(2, 10, None)))
    """
    normal = PLANE_NORMAL[plane]
    if not mask.any():
        mask = np.ones_like(mask, dtype=bool)
    other = tuple(a for a in range(3) if a != normal)
    area = mask.sum(axis=other).astype(np.float64)
    cdf = np.cumsum(area) / area.sum()
    levels = np.linspace(0.5 - spread / 2, 0.5 + spread / 2, n_slices) if n_slices > 1 else [0.5]
    indices = tuple(int(np.searchsorted(cdf, q)) for q in levels)
    horizontal, vertical = (a for a in range(3) if a != normal)

    def _span(axis: int) -> slice:
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        first, last = int(present[0]), int(present[-1])
        return slice(max(first - margin, 0), min(last + margin + 1, mask.shape[axis]))

    return View(plane, indices, (_span(vertical), _span(horizontal)))


def tile_aspect(grid_affine: np.ndarray, plane: str) -> float:
    """Height/width of one pixel of a tile of ``plane`` (``imshow``'s ``aspect``)."""
    zooms = np.sqrt((np.asarray(grid_affine)[:3, :3] ** 2).sum(axis=0))
    horizontal, vertical = (a for a in range(3) if a != PLANE_NORMAL[plane])
    return float(zooms[vertical] / zooms[horizontal])


def slice_position_mm(grid_affine: np.ndarray, plane: str, index: int) -> float:
    """World coordinate (mm) of slice ``index`` of ``plane`` along its normal."""
    normal = PLANE_NORMAL[plane]
    ijk = np.zeros(4)
    ijk[normal], ijk[3] = index, 1.0
    return float((np.asarray(grid_affine) @ ijk)[normal])
