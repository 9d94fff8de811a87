"""Training slices: find the input volumes, preprocess them, cut and cache their 2D slices.

Preprocessing is the workflow's own (:mod:`bida_app.preprocess`): N4, RAS reorientation,
cubic B-spline resampling of every high-resolution axis to the model voxel size, 1st/99th
percentile clipping to [-1, 1] and centre-pad / brain-crop to the model grid. An axis is
*high-resolution* when its spacing is at most ``hr_tolerance`` times the model voxel size;
coarser axes (thick-slice directions) are kept as they are, and only the planes spanned by two
high-resolution axes give training slices.

A plane's slices come from the volumes where that plane is high-resolution. Slices of another
high-resolution plane can stand in for it (``cross_plane``, and always for thick-slice inputs,
whose single HR plane would otherwise give nothing): the axis both planes share keeps its
role and the other HR axis plays the remaining one, e.g. a coronal slice (L-R × I-S) serves the
sagittal prior (A-P × I-S) with L-R playing A-P — the 90° rotation self-supervised SR uses.
Every slice is centre-cropped/padded (background -1) to the plane's slice shape on the grid;
slices that are mostly background are skipped.

The slices of one plane are cached once, as a ``.npy`` file opened as a memory map, under
``cache_dir``, keyed by a hash of the input files (path, size, modification time) and the
preprocessing settings; each volume's preprocessing (N4 included) is cached the same way, so
training another plane from the same inputs does not repeat it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..errors import BidaError, ExitCode
from ..models.weights import PLANE_SLICE_AXIS, PLANES, plane_slice_shape, sha256_file
from ..preprocess.standardize import CLIP_PERCENTILES, MODEL_GRID
from ..utils.io import atomic_path, write_json

LOGGER = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bumped whenever the cached arrays would change for the same settings."""

NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class PrepConfig:
    """Preprocessing and slice-selection settings (part of the cache key).

    Parameters
    ----------
    voxel_mm : float
        Model voxel size; every high-resolution axis is resampled to it.
    grid : tuple of int
        Model grid (RAS) the volumes are padded / brain-cropped to.
    n4 : bool
        Run N4 bias-field correction first.
    lower, upper : float
        Clipping percentiles.
    hr_tolerance : float
        Axes with spacing ``<= hr_tolerance * voxel_mm`` count as high-resolution.
    min_foreground : float
        A slice is kept when its foreground fraction is at least this fraction of the largest
        one among its volume's slices of the same plane.
    foreground_level : float
        Standardized intensity above which a pixel counts as foreground.
    cross_plane : bool
        Also use the other high-resolution planes' slices (shared axis kept).
    """

    voxel_mm: float = 0.2
    grid: tuple[int, int, int] = MODEL_GRID
    n4: bool = True
    lower: float = CLIP_PERCENTILES[0]
    upper: float = CLIP_PERCENTILES[1]
    hr_tolerance: float = 1.25
    min_foreground: float = 0.1
    foreground_level: float = -0.9
    cross_plane: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(int(n) for n in self.grid))

    def volume_settings(self) -> dict[str, Any]:
        """Settings that change a preprocessed volume."""
        keys = ("voxel_mm", "grid", "n4", "lower", "upper", "hr_tolerance")
        return {k: getattr(self, k) for k in keys}


@dataclass
class PreparedVolume:
    """A standardized volume on the model grid and the planes it has HR slices of.

    Attributes
    ----------
    name : str
        Source label (file name).
    data : ndarray
        float32 standardized volume (RAS); coarse axes keep their length.
    hr_planes : tuple of str
        Planes whose both axes are high-resolution.
    info : dict
        Input voxel sizes, shapes, standardization parameters.
    """

    name: str
    data: np.ndarray
    hr_planes: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class SliceSet:
    """The cached slices of one plane.

    Attributes
    ----------
    plane : str
        Target plane.
    slices : ndarray, shape (N, H, W)
        float32 slices (often a read-only memory map).
    volume : ndarray of int, shape (N,)
        Index into ``sources`` of each slice's volume.
    position : ndarray of int, shape (N,)
        Slice index inside its volume.
    bbox : ndarray of int, shape (N, 4)
        Foreground box ``(row0, row1, col0, col1)`` (end exclusive) of each slice.
    sources : list of str
        Source volume labels.
    key : str
        Cache key.
    source_sha256 : list of str
        SHA-256 of each source file (empty for in-memory sets): the training record that
        ``bida evaluate`` checks to score a prior only on volumes it never saw.
    """

    plane: str
    slices: np.ndarray
    volume: np.ndarray
    position: np.ndarray
    bbox: np.ndarray
    sources: list[str]
    key: str = ""
    source_sha256: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.slices.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Slice height and width."""
        return int(self.slices.shape[1]), int(self.slices.shape[2])


# --------------------------------------------------------------------------- inputs
def find_inputs(
    inputs: Iterable[str | Path], participant_label: Sequence[str] | None = None
) -> list[Path]:
    """NIfTI files to train on: files as given, and every isotropic T2w run of BIDS datasets.

    Parameters
    ----------
    inputs : iterable of path
        NIfTI files and/or BIDS dataset folders.
    participant_label : sequence of str, optional
        BIDS inputs only: subjects to use (with or without ``sub-``).

    Returns
    -------
    list of Path
        Sorted, de-duplicated files.

    Raises
    ------
    BidaError
        Missing input (66), a folder that is not BIDS (16), no usable run (18).
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += _bids_isotropic_t2w(path, participant_label)
        elif path.is_file() and path.name.endswith(NIFTI_SUFFIXES):
            found.append(path.resolve())
        elif path.exists():
            raise BidaError(f"{path}: not a NIfTI file or BIDS folder", ExitCode.USAGE)
        else:
            raise BidaError(f"{path}: no such file or folder", ExitCode.MISSING_INPUT)
    found = sorted(dict.fromkeys(found))
    if not found:
        raise BidaError("no training volumes found in the inputs", ExitCode.NO_DATA)
    return found


def _bids_isotropic_t2w(root: Path, participant_label: Sequence[str] | None) -> list[Path]:
    from ..bids.discovery import isotropic_t2w_runs

    runs = isotropic_t2w_runs(root, list(participant_label) if participant_label else None)
    LOGGER.info("%s: %d isotropic T2w run(s)", root, len(runs))
    return [path.resolve() for path, _ in runs]


# --------------------------------------------------------------------------- preprocessing
def hr_axes(zooms: Sequence[float], voxel_mm: float, tolerance: float = 1.25) -> tuple[int, ...]:
    """Voxel axes fine enough to count as high-resolution.

    Examples
    --------
    >>> hr_axes([0.1125, 1.0, 0.1125], 0.2)
    (0, 2)
    """
    return tuple(i for i, z in enumerate(zooms) if z <= tolerance * voxel_mm)


def hr_planes(axes: Sequence[int]) -> tuple[str, ...]:
    """Planes spanned by two of the high-resolution ``axes``.

    Examples
    --------
    >>> hr_planes((0, 2))
    ('coronal',)
    >>> hr_planes((0, 1, 2))
    ('axial', 'coronal', 'sagittal')
    """
    return tuple(p for p in PLANES if all(a in axes for a in range(3) if a != PLANE_SLICE_AXIS[p]))


def standardize_ras(
    ras: nib.Nifti1Image,
    prep: PrepConfig,
    name: str = "",
    axes: Sequence[int] | None = None,
) -> tuple[np.ndarray, tuple[str, ...], dict[str, Any]]:
    """Resample the HR axes of a RAS image and standardize it onto the grid.

    ``axes`` overrides which voxel axes count as high-resolution (default: by spacing, see
    :func:`hr_axes`). Returns the standardized array, its HR planes, and a summary.
    """
    from ..preprocess.orient import voxel_sizes
    from ..preprocess.resample import resample_inplane
    from ..preprocess.standardize import standardize

    zooms = voxel_sizes(ras.affine)
    if axes is None:
        axes = hr_axes(zooms, prep.voxel_mm, prep.hr_tolerance)
    axes = tuple(sorted(int(a) for a in axes))
    planes = hr_planes(axes)
    if not planes:
        raise BidaError(
            f"{name}: voxel sizes {np.round(zooms, 4).tolist()} mm give no plane at the model "
            f"voxel size {prep.voxel_mm} mm",
            ExitCode.BAD_DATA,
        )
    img = ras
    coarse = [a for a in range(3) if a not in axes]
    if coarse:
        img = resample_inplane(img, coarse[0], prep.voxel_mm)
    else:
        img = resample_inplane(resample_inplane(img, 2, prep.voxel_mm), 0, prep.voxel_mm)
    grid = tuple(None if a in coarse else prep.grid[a] for a in range(3))
    std, params = standardize(
        np.asarray(img.dataobj, np.float32),
        grid,
        lower=prep.lower,
        upper=prep.upper,
        crop="brain",
    )
    info = {
        "source": name,
        "voxel_sizes_mm": [round(float(z), 6) for z in zooms],
        "hr_axes": list(axes),
        "hr_planes": list(planes),
        "standardization": params.to_dict(),
    }
    return std.astype(np.float32), planes, info


def prepare_volume(path: str | Path, prep: PrepConfig) -> PreparedVolume:
    """Load, bias-correct (optional), reorient, resample and standardize one training volume."""
    from ..preprocess.n4 import n4_correct
    from ..preprocess.orient import to_ras

    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as err:  # nibabel raises several types for unreadable files
        raise BidaError(f"{path}: unreadable NIfTI ({err})", ExitCode.BAD_DATA) from err
    ras, _ = to_ras(img, path.name)
    if prep.n4:
        ras = n4_correct(ras, name=path.name).corrected
    std, planes, info = standardize_ras(ras, prep, path.name)
    return PreparedVolume(path.name, std, planes, info)


# --------------------------------------------------------------------------- slices
def plane_axes(plane: str) -> tuple[int, int]:
    """Volume axes of a slice's rows and columns.

    Examples
    --------
    >>> plane_axes("sagittal")
    (1, 2)
    """
    s = PLANE_SLICE_AXIS[plane]
    a, b = (i for i in range(3) if i != s)
    return a, b


def slices_as(volume: np.ndarray, source: str, target: str) -> np.ndarray:
    """Slices of plane ``source`` of ``volume``, oriented to serve as ``target`` slices.

    For ``source == target`` these are the plane's own slices; otherwise the axis the two
    planes share keeps its row/column role and the other axis of ``source`` plays the
    remaining axis of ``target``.

    Returns
    -------
    ndarray, shape (N, H, W)

    Examples
    --------
    >>> vol = np.zeros((4, 5, 6))
    >>> slices_as(vol, "coronal", "sagittal").shape  # L-R plays A-P
    (5, 4, 6)
    >>> slices_as(vol, "axial", "sagittal").shape  # rows A-P (shared), L-R plays I-S
    (6, 5, 4)
    """
    stack = np.moveaxis(volume, PLANE_SLICE_AXIS[source], 0)
    if source == target:
        return stack
    src, dst = plane_axes(source), plane_axes(target)
    shared = (set(src) & set(dst)).pop()
    if src.index(shared) != dst.index(shared):
        stack = stack.transpose(0, 2, 1)
    return stack


def fit_canvas(stack: np.ndarray, shape: Sequence[int], fill: float = -1.0) -> np.ndarray:
    """Centre-crop / pad slices ``(N, h, w)`` to ``shape`` (odd extra pixel after).

    Examples
    --------
    >>> fit_canvas(np.ones((1, 2, 6)), (4, 4))[0]
    array([[-1., -1., -1., -1.],
           [ 1.,  1.,  1.,  1.],
           [ 1.,  1.,  1.,  1.],
           [-1., -1., -1., -1.]], dtype=float32)
    """
    n = stack.shape[0]
    out = np.full((n, *shape), fill, dtype=np.float32)
    src, dst = [slice(None)], [slice(None)]
    for have, want in zip(stack.shape[1:], shape, strict=True):
        if have >= want:
            start = (have - want) // 2
            src.append(slice(start, start + want))
            dst.append(slice(None))
        else:
            start = (want - have) // 2
            src.append(slice(None))
            dst.append(slice(start, start + have))
    out[tuple(dst)] = stack[tuple(src)]
    return out


def foreground_boxes(stack: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Foreground fraction and box ``(r0, r1, c0, c1)`` of each slice (empty: whole slice)."""
    fg = stack > level
    frac = fg.mean(axis=(1, 2))
    rows, cols = fg.any(axis=2), fg.any(axis=1)
    n, h, w = stack.shape
    box = np.tile(np.array([0, h, 0, w]), (n, 1))
    for i in np.flatnonzero(frac > 0):
        r, c = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        box[i] = (r[0], r[-1] + 1, c[0], c[-1] + 1)
    return frac, box


def select_slices(
    volume: PreparedVolume, plane: str, prep: PrepConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slices of ``volume`` for the ``plane`` prior: (slices, positions, boxes).

    Native slices when ``plane`` is high-resolution in this volume; slices of the other HR
    planes when ``prep.cross_plane`` is set or the plane itself is not HR. Mostly-empty slices
    are dropped (see :class:`PrepConfig`).
    """
    if plane in volume.hr_planes and not prep.cross_plane:
        sources = [plane]
    else:
        sources = list(volume.hr_planes)
    canvas = plane_slice_shape(plane, prep.grid)
    kept, pos, boxes = [], [], []
    offset = 0
    for src in sources:
        stack = fit_canvas(slices_as(volume.data, src, plane), canvas)
        frac, box = foreground_boxes(stack, prep.foreground_level)
        keep = (frac > 0) & (frac >= prep.min_foreground * frac.max())
        kept.append(stack[keep])
        pos.append(offset + np.flatnonzero(keep))
        boxes.append(box[keep])
        offset += stack.shape[0]
        LOGGER.info(
            "%s: %d of %d %s slices kept for the %s prior",
            volume.name,
            int(keep.sum()),
            stack.shape[0],
            src,
            plane,
        )
    return np.concatenate(kept), np.concatenate(pos), np.concatenate(boxes)


# --------------------------------------------------------------------------- cache
def _file_stamp(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def volume_key(path: Path, prep: PrepConfig) -> str:
    """Cache key of one preprocessed volume."""
    return _digest({"v": CACHE_VERSION, "file": _file_stamp(path), "prep": prep.volume_settings()})


def slice_key(paths: Sequence[Path], plane: str, prep: PrepConfig) -> str:
    """Cache key of a plane's slice set."""
    return _digest(
        {
            "v": CACHE_VERSION,
            "plane": plane,
            "volumes": [volume_key(p, prep) for p in paths],
            "prep": asdict(prep),
        }
    )


def cached_volume(path: Path, prep: PrepConfig, cache_dir: Path) -> PreparedVolume:
    """:func:`prepare_volume`, cached as ``cache_dir/volumes/<key>.npy`` + ``.json``."""
    key = volume_key(path, prep)
    npy, meta = cache_dir / "volumes" / f"{key}.npy", cache_dir / "volumes" / f"{key}.json"
    if npy.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        data = np.load(npy, mmap_mode="r")
        return PreparedVolume(info["source"], data, tuple(info["hr_planes"]), info)
    vol = prepare_volume(path, prep)
    with atomic_path(npy) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, vol.data)
    write_json(meta, vol.info)
    return vol


def build_slices(
    paths: Sequence[Path],
    plane: str,
    prep: PrepConfig,
    cache_dir: str | Path,
    *,
    progress: bool = True,
) -> SliceSet:
    """The slices of ``plane`` from ``paths``, built once and cached under ``cache_dir``.

    Parameters
    ----------
    paths : sequence of Path
        Training volumes (see :func:`find_inputs`).
    plane : str
        Target plane.
    prep : PrepConfig
        Preprocessing settings.
    cache_dir : path
        Cache folder (created).
    progress : bool
        Show a progress bar over volumes while building.

    Returns
    -------
    SliceSet
        With ``slices`` memory-mapped read-only from the cache.
    """
    from tqdm.auto import tqdm

    cache_dir = Path(cache_dir)
    key = slice_key(paths, plane, prep)
    npy, meta_path = (
        cache_dir / f"slices-{plane}-{key}.npy",
        cache_dir / f"slices-{plane}-{key}.json",
    )
    if not (npy.is_file() and meta_path.is_file()):
        LOGGER.info("building the %s slice cache from %d volume(s)", plane, len(paths))
        parts, vols, pos, boxes, names = [], [], [], [], []
        for i, path in enumerate(tqdm(paths, desc=f"preprocess ({plane})", disable=not progress)):
            vol = cached_volume(path, prep, cache_dir)
            s, p, b = select_slices(vol, plane, prep)
            parts.append(s)
            vols.append(np.full(len(s), i))
            pos.append(p)
            boxes.append(b)
            names.append(vol.name)
        slices = np.concatenate(parts).astype(np.float32)
        if not len(slices):
            raise BidaError(f"no usable {plane} slices in the inputs", ExitCode.NO_DATA)
        with atomic_path(npy) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, slices)
        write_json(
            meta_path,
            {
                "plane": plane,
                "key": key,
                "sources": names,
                "source_sha256": [sha256_file(p) for p in paths],
                "volume": np.concatenate(vols).tolist(),
                "position": np.concatenate(pos).tolist(),
                "bbox": np.concatenate(boxes).tolist(),
                "prep": asdict(prep),
            },
        )
    else:
        LOGGER.info("using the cached %s slices %s", plane, npy.name)
    meta = json.loads(meta_path.read_text())
    return SliceSet(
        plane=plane,
        slices=np.load(npy, mmap_mode="r"),
        volume=np.asarray(meta["volume"], dtype=np.int64),
        position=np.asarray(meta["position"], dtype=np.int64),
        bbox=np.asarray(meta["bbox"], dtype=np.int64).reshape(-1, 4),
        sources=list(meta["sources"]),
        key=key,
        source_sha256=list(meta.get("source_sha256") or [sha256_file(p) for p in paths]),
    )


def slices_from_arrays(
    volumes: Sequence[PreparedVolume], plane: str, prep: PrepConfig
) -> SliceSet:
    """An in-memory :class:`SliceSet` from already prepared volumes (no cache)."""
    parts, vols, pos, boxes = [], [], [], []
    for i, vol in enumerate(volumes):
        s, p, b = select_slices(vol, plane, prep)
        parts.append(s)
        vols.append(np.full(len(s), i))
        pos.append(p)
        boxes.append(b)
    return SliceSet(
        plane=plane,
        slices=np.concatenate(parts).astype(np.float32),
        volume=np.concatenate(vols),
        position=np.concatenate(pos),
        bbox=np.concatenate(boxes).reshape(-1, 4),
        sources=[v.name for v in volumes],
    )


def split_validation(
    data: SliceSet, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, str]:
    """Indices of training and validation slices.

    Whole volumes are held out (``round(fraction * n_volumes)``, chosen with ``seed``) when
    that is at least one volume and leaves one to train on; otherwise the last ``fraction``
    of each volume's slices (a contiguous block, so neighbours of training slices are few).

    Returns
    -------
    train, val : ndarray of int
        Slice indices.
    mode : str
        ``"volumes"``, ``"slices"`` or ``"none"``.
    """
    n = len(data)
    if fraction <= 0:
        return np.arange(n), np.arange(0), "none"
    vols = np.unique(data.volume)
    n_val = int(round(fraction * len(vols)))
    if 1 <= n_val < len(vols):
        rng = np.random.default_rng(seed)
        held = rng.choice(vols, size=n_val, replace=False)
        val = np.isin(data.volume, held)
        return np.flatnonzero(~val), np.flatnonzero(val), "volumes"
    val = np.zeros(n, bool)
    for v in vols:
        idx = np.flatnonzero(data.volume == v)
        k = max(1, int(round(fraction * len(idx)))) if len(idx) > 1 else 0
        if k:
            val[idx[np.argsort(data.position[idx])[-k:]]] = True
    LOGGER.warning(
        "validation: fewer volumes than 1/val_fraction; holding out the last %.0f%% of each "
        "volume's slices instead of whole volumes",
        100 * fraction,
    )
    return np.flatnonzero(~val), np.flatnonzero(val), "slices"
