"""Preprocessing as pure functions: N4, reorientation, in-plane resampling, standardization.

Each step takes and returns nibabel images or NumPy arrays and records what its inverse
needs, so the Nipype interfaces in :mod:`bida_app.workflows` stay thin.
"""

from .n4 import N4Result, from_ants, n4_correct, rough_head_mask, to_ants
from .orient import (
    OrientationInfo,
    from_ras,
    through_plane_axis,
    to_ras,
    validate_header,
    voxel_sizes,
)
from .resample import inplane_grid, resample_axis, resample_inplane, resample_to_grid
from .standardize import (
    MODEL_GRID,
    StandardizeParams,
    destandardize,
    grid_affine,
    pad_widths,
    standardize,
)

__all__ = [
    "MODEL_GRID",
    "N4Result",
    "OrientationInfo",
    "StandardizeParams",
    "destandardize",
    "from_ants",
    "from_ras",
    "grid_affine",
    "inplane_grid",
    "n4_correct",
    "pad_widths",
    "resample_axis",
    "resample_inplane",
    "resample_to_grid",
    "rough_head_mask",
    "standardize",
    "through_plane_axis",
    "to_ants",
    "to_ras",
    "validate_header",
    "voxel_sizes",
]
