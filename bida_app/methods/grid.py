"""The model grid fitted to a thick-slice scan (shared by BiDA and its scan-adaptive prior)."""

from __future__ import annotations

import nibabel as nib

from ..models.weights import MODEL_GRID, MODEL_VOXEL_MM
from ..preprocess.orient import voxel_sizes
from ..preprocess.resample import inplane_grid


def scan_grid(
    ras: nib.Nifti1Image, axis: int, voxel_mm: float = MODEL_VOXEL_MM, factor: int = 4
) -> tuple[int, int, int]:
    """Model grid fitted to a thick-slice scan: its extent at ``voxel_mm``, in multiples of
    ``factor``; in-plane axes at most the standard grid (larger FOVs are brain-cropped, as
    for the shipped priors).

    Examples
    --------
    >>> import numpy as np
    >>> img = nib.Nifti1Image(np.zeros((256, 24, 256), np.float32),
    ...                       np.diag([0.1125, 1.0, 0.1125, 1.0]))
    >>> scan_grid(img, 1)
    (144, 120, 64)
    """
    _, shape = inplane_grid(ras.affine, ras.shape[:3], axis, voxel_mm)
    n = list(shape)
    n[axis] = int(round(ras.shape[axis] * voxel_sizes(ras.affine)[axis] / voxel_mm))
    grid = [-(-k // factor) * factor for k in n]
    for a in range(3):
        if a != axis:
            grid[a] = min(grid[a], MODEL_GRID[a])
    return tuple(grid)  # type: ignore[return-value]
