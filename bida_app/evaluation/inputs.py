"""Inputs of ``bida evaluate``: isotropic HR volumes, slice tiling, grids.

Grids. The HR volume is trimmed (centred) along the through-plane axis to a whole number
of thick slices when that costs at most ``2 s`` voxels (e.g. 67 → 65 voxels for 2.5× and
5× on a 200 µm grid), so the slices tile it exactly and every method's output lands on the
HR grid voxel for voxel. Otherwise the last partial slice is dropped, outputs are resampled
onto the HR grid (cubic B-spline, through the shared world coordinates) and scores are
taken over the span of the slices only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import BadDataError, BidaError, ExitCode
from ..physics.operator import SliceOperator
from ..physics.simulate import ISOTROPY_RTOL
from ..preprocess.orient import voxel_sizes

LOGGER = logging.getLogger(__name__)
#: Suffixes of a reference brain mask stored beside a volume (``X_T2w.nii.gz`` → ``X_mask``).
MASK_SUFFIXES = ("_mask", "_desc-brain_mask")


@dataclass(frozen=True)
class HRVolume:
    """One isotropic input volume."""

    name: str
    path: Path
    source: str

    @property
    def reference_mask(self) -> Path | None:
        """A reference brain mask beside the volume (``*_mask.nii[.gz]``), if any."""
        return find_reference_mask(self.path)


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def is_isotropic(path: Path) -> bool:
    """Whether a NIfTI file's voxels are isotropic (header only; bad files exit 65)."""
    try:
        img = nib.load(str(path))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadDataError(f"{path}: cannot read NIfTI header ({reason})") from exc
    if len(img.shape) not in (3, 4) or (len(img.shape) == 4 and img.shape[3] != 1):
        LOGGER.info("skipping %s: not a 3D volume (shape %s)", path.name, img.shape)
        return False
    zooms = voxel_sizes(img.affine)
    if np.allclose(zooms, zooms[0], rtol=ISOTROPY_RTOL):
        return True
    LOGGER.info("skipping %s: not isotropic (%s mm)", path.name, np.round(zooms, 4))
    return False


def _bids_runs(root: Path) -> list[tuple[Path, str]]:
    """T2w NIfTI runs of a BIDS dataset (pybids) and the demo dataset's phantom truths."""
    from bids import BIDSLayout

    try:
        layout = BIDSLayout(str(root), validate=False)
    except Exception as exc:
        raise BidaError(f"{root}: not a BIDS dataset ({exc})", ExitCode.BIDS_INVALID) from exc
    runs = [
        (Path(f.path), "bids") for f in layout.get(suffix="T2w", extension=[".nii", ".nii.gz"])
    ]
    truth = root / "derivatives" / "phantom"
    runs += [(p, "demo-truth") for p in sorted(truth.rglob("*desc-truth_T2w.nii*"))]
    return runs


def find_volumes(inputs: Sequence[str | os.PathLike[str]]) -> list[HRVolume]:
    """Isotropic HR volumes named by the command line.

    Parameters
    ----------
    inputs : sequence of path
        NIfTI files, or one BIDS dataset (every isotropic T2w run; for the demo dataset
        also its ``derivatives/phantom/*desc-truth_T2w`` volumes).

    Returns
    -------
    list of HRVolume
        Unique names (file stems, suffixed ``-2``, ``-3`` … on collisions).

    Raises
    ------
    BidaError
        A missing input (66), a directory that is not BIDS (16), no isotropic volume (18).
    BadDataError
        An unreadable NIfTI file (65).
    """
    candidates: list[tuple[Path, str]] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise BidaError(f"{path}: no such file or directory", ExitCode.MISSING_INPUT)
        if path.is_dir():
            if not (path / "dataset_description.json").is_file():
                raise BidaError(
                    f"{path}: not a BIDS dataset (no dataset_description.json); pass NIfTI "
                    "files or a BIDS folder",
                    ExitCode.BIDS_INVALID,
                )
            candidates += _bids_runs(path.resolve())
        else:
            candidates.append((path.resolve(), "nifti"))
    volumes: list[HRVolume] = []
    seen: dict[str, int] = {}
    for path, source in dict.fromkeys(candidates):
        if not is_isotropic(path):
            continue
        name = _stem(path)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}-{seen[name]}"
        volumes.append(HRVolume(name, path, source))
    if not volumes:
        where = ", ".join(str(p) for p in inputs)
        raise BidaError(f"no isotropic T2w volume found in {where}", ExitCode.NO_DATA)
    return volumes


def slice_tiling(n_hr: int, factor: float, max_trim: int | None = None) -> tuple[int, int, bool]:
    """Centred HR span that a whole number of ``factor``-voxel slices tiles exactly.

    Parameters
    ----------
    n_hr : int
        HR voxels along the through-plane axis.
    factor : float
        Slice spacing in HR voxels (the scale).
    max_trim : int, optional
        Most voxels that may be trimmed (default ``ceil(2 * factor)``).

    Returns
    -------
    start, n : int
        First HR voxel and number of voxels kept.
    exact : bool
        False when no such span exists within ``max_trim``: then ``(0, n_hr)`` is returned
        and the slices cover ``floor(n_hr / factor) * factor`` voxels only.

    Examples
    --------
    >>> slice_tiling(67, 2.5), slice_tiling(67, 5.0), slice_tiling(60, 2.5)
    ((1, 65, True), (1, 65, True), (0, 60, True))
    >>> slice_tiling(56, 3.3)
    (0, 56, False)
    """
    max_trim = int(math.ceil(2 * factor)) if max_trim is None else max_trim
    n_lr = int(math.floor(n_hr / factor * (1 + 1e-9)))
    while n_lr >= 1:
        n = n_lr * factor
        if abs(n - round(n)) < 1e-6 and n_hr - round(n) <= max_trim:
            n = int(round(n))
            return (n_hr - n) // 2, n, True
        if n_hr - n > max_trim:
            break
        n_lr -= 1
    return 0, n_hr, False


def trim_axis(img: nib.Nifti1Image, axis: int, start: int, n: int) -> nib.Nifti1Image:
    """Voxels ``start:start+n`` of ``img`` along ``axis``, with the affine moved to match."""
    if start == 0 and n == img.shape[axis]:
        return img
    index = [slice(None)] * 3
    index[axis] = slice(start, start + n)
    data = np.asarray(img.dataobj, dtype=np.float32)[tuple(index)]
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.eye(3)[axis] * start + img.affine[:3, 3]
    out = nib.Nifti1Image(data, affine, header=img.header)
    out.set_sform(affine, code=1)
    out.set_qform(affine, code=1)
    return out


def slab_box(op: SliceOperator, n_hr: int, axis: int) -> tuple[slice, ...]:
    """HR voxels (box along ``axis``) whose centres lie inside the span of the slices."""
    centres = np.asarray(op.lr_centres, dtype=np.float64)
    half = float(np.median(np.diff(centres))) / 2.0 if len(centres) > 1 else n_hr / 2.0
    lo = max(0, int(math.ceil(centres[0] - half - 1e-6)))
    hi = min(n_hr - 1, int(math.floor(centres[-1] + half + 1e-6)))
    box = [slice(None)] * 3
    box[axis] = slice(lo, hi + 1)
    return tuple(box)


def to_hr_grid(sr_img: nib.spatialimages.SpatialImage, hr_img: nib.Nifti1Image) -> np.ndarray:
    """SR data on the HR grid: as is when the grids agree, else cubic B-spline resampling."""
    from ..preprocess.resample import resample_to_grid

    data = np.asarray(sr_img.dataobj, dtype=np.float64)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BadDataError(f"super-resolved output has shape {data.shape}, expected 3D")
    if data.shape == hr_img.shape and np.allclose(sr_img.affine, hr_img.affine, atol=1e-4):
        return data
    LOGGER.debug("resampling output %s onto the HR grid %s", data.shape, hr_img.shape)
    return resample_to_grid(data, sr_img.affine, hr_img.affine, hr_img.shape, order=3)


def find_reference_mask(path: Path) -> Path | None:
    """The reference mask stored beside ``path`` (``X_T2w.nii.gz`` → ``X_mask.nii.gz``).

    Examples
    --------
    >>> find_reference_mask(Path("/nonexistent/a_T2w.nii.gz")) is None
    True
    """
    stem = _stem(Path(path))
    base = stem[: -len("_T2w")] if stem.endswith("_T2w") else stem
    for suffix in MASK_SUFFIXES:
        for ext in (".nii.gz", ".nii"):
            candidate = Path(path).with_name(base + suffix + ext)
            if candidate.is_file():
                return candidate
    return None
