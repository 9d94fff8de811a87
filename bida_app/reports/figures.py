"""QC figures of one run: input vs super-resolved mosaics, bias field, uncertainty, flicker.

For each of the two anatomical planes that contain the through-plane axis (sagittal and axial
for coronal slices), :func:`render_run_figures` writes, under ``sub-<label>/figures/``::

    <entities>_desc-<plane>Input_T2w.png           thick-slice input on the SR grid (NN)
    <entities>_desc-<plane><Method>_T2w.png        super-resolved result, same layout/size
    <entities>_desc-<plane><Method>Flicker_T2w.svg alternates the two (no script)
    <entities>_desc-<plane>Bias_T2w.png            N4 bias field (when given)
    <entities>_desc-<plane><Method>Std_T2w.png     posterior std (when given, K > 1)
    <entities>_desc-<method>QC_T2w.json            no-reference image-quality metrics

``<entities>`` is the run's BIDS entities (``sub-01_ses-1_acq-coronal``), ``<Method>`` the
method label with a capital first letter (``Cubic``, ``Bida``).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np

from ..bids.derivatives import ENTITY_ORDER
from ..utils.io import write_json
from . import metrics
from .plotting import render_mosaic, write_flicker_svg
from .views import (
    AXIS_ENDS,
    WORLD_AXIS,
    canonical,
    choose_view,
    sample_tile,
    slice_position_mm,
    slice_tile,
    through_planes,
    tile_aspect,
    world_through_axis,
)

LOGGER = logging.getLogger(__name__)
#: An image, or the path of one.
ImageLike = str | os.PathLike[str] | nib.spatialimages.SpatialImage
#: Slices per mosaic.
N_SLICES = 6
#: Grey-level window: percentiles of the head's intensities.
WINDOW = (0.5, 99.0)


def entity_prefix(entities: dict) -> str:
    """BIDS entity part of a run's file names, in BIDS order.

    Examples
    --------
    >>> entity_prefix({"subject": "01", "run": 2, "acquisition": "coronal", "session": ""})
    'sub-01_acq-coronal_run-2'
    """
    parts = [
        f"{short}-{entities[key]}"
        for key, short in ENTITY_ORDER
        if entities.get(key) not in (None, "")
    ]
    return "_".join(parts)


def method_label(method: str) -> str:
    """Alphanumeric, capitalised method label used in ``desc-`` values.

    Examples
    --------
    >>> method_label("bida"), method_label(""), method_label("my-method")
    ('Bida', 'SR', 'Mymethod')
    """
    clean = re.sub(r"[^0-9A-Za-z]", "", method or "")
    return clean[:1].upper() + clean[1:] if clean else "SR"


def figure_path(figures_dir: Path, prefix: str, desc: str, ext: str = "png") -> Path:
    """``figures_dir/<prefix>_desc-<desc>_T2w.<ext>``."""
    return Path(figures_dir) / f"{prefix}_desc-{desc}_T2w.{ext}"


def figures_dir(output_dir: str | os.PathLike[str], subject: str) -> Path:
    """``output_dir/sub-<label>/figures``."""
    return Path(output_dir) / f"sub-{subject.removeprefix('sub-')}" / "figures"


def _window(tiles: list[np.ndarray], masks: list[np.ndarray], q=(0.5, 99.5)) -> tuple:
    values = np.concatenate([t[m & np.isfinite(t)] for t, m in zip(tiles, masks, strict=True)])
    if values.size == 0:
        values = np.concatenate([t[np.isfinite(t)] for t in tiles])
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, q))
    return lo, hi if hi > lo else lo + 1.0


def render_run_figures(
    sr_file: ImageLike,
    out_dir: str | os.PathLike[str],
    prefix: str,
    *,
    in_file: ImageLike | None = None,
    bias_file: ImageLike | None = None,
    std_file: ImageLike | None = None,
    corrected_file: ImageLike | None = None,
    method: str = "",
    world_axis: int | str | None = None,
    n_slices: int = N_SLICES,
) -> list[Path]:
    """Render the QC figures of one run (see the module docstring for the files).

    Parameters
    ----------
    sr_file : path or SpatialImage
        Super-resolved image.
    out_dir : path
        Figures folder (created).
    prefix : str
        Entity prefix of the file names (:func:`entity_prefix`).
    in_file : path or SpatialImage, optional
        Thick-slice input (any voxel order, same world space); without it the input panels,
        the flicker and the input metrics are left out.
    bias_file, std_file : path or SpatialImage, optional
        N4 bias field (any grid in the same world space) and posterior standard deviation.
    corrected_file : path or SpatialImage, optional
        The result before the bias field was put back (``desc-<method>Biascorr``).
    method : str
        Method name for the file names (``cubic``, ``bida``).
    world_axis : int or str, optional
        Through-plane world axis (0/1/2 or ``"LR"``/``"AP"``/``"SI"``) when ``in_file`` is
        not given (default A-P).
    n_slices : int
        Slices per mosaic.

    Returns
    -------
    list of Path
        Files written, QC JSON last.
    """
    out_dir = Path(out_dir)
    data, affine = canonical(_in_memory(sr_file))
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    lr_img = _in_memory(in_file)
    if lr_img is not None:
        through = world_through_axis(lr_img)
    elif isinstance(world_axis, str):
        through = WORLD_AXIS.get(world_axis, 1)
    else:
        through = 1 if world_axis is None else int(world_axis)
    extras = {
        "Bias": (_in_memory(bias_file), "viridis"),
        f"{method_label(method)}Std": (_in_memory(std_file), "magma"),
        f"{method_label(method)}Biascorr": (_in_memory(corrected_file), "gray"),
    }
    titles = {"Bias": "N4 bias field (multiplicative)", "Biascorr": "bias-corrected intensity"}
    mask = metrics.head_mask(data, zooms)
    written: list[Path] = []
    for plane in through_planes(through):
        view = choose_view(mask, plane, n_slices)
        horizontal, vertical = view.axes
        opts = {
            "aspect": tile_aspect(affine, plane),
            "labels": [
                f"{'xyz'[view.normal]} = {slice_position_mm(affine, plane, k):+.1f} mm"
                for k in view.indices
            ],
            "orientation": (*AXIS_ENDS[horizontal], *AXIS_ENDS[vertical]),
        }
        masks = [slice_tile(mask, plane, k)[view.crop] for k in view.indices]
        sr_tiles = [slice_tile(data, plane, k)[view.crop] for k in view.indices]
        from .plotting import grid_columns

        rows, cols = sr_tiles[0].shape
        opts["ncols"] = grid_columns(len(sr_tiles), rows * opts["aspect"] / cols)
        sr_png = figure_path(out_dir, prefix, f"{plane}{method_label(method)}")
        lo, hi = _window(sr_tiles, masks, WINDOW)
        written.append(render_mosaic(sr_tiles, sr_png, vmin=lo, vmax=hi, **opts))
        if lr_img is not None:
            tiles = [sample_tile(lr_img, affine, data.shape, plane, k)[view.crop]
                     for k in view.indices]  # fmt: skip
            in_png = figure_path(out_dir, prefix, f"{plane}Input")
            lo, hi = _window(tiles, masks, WINDOW)
            written.append(render_mosaic(tiles, in_png, vmin=lo, vmax=hi, **opts))
            flicker = figure_path(out_dir, prefix, f"{plane}{method_label(method)}Flicker", "svg")
            written.append(write_flicker_svg(in_png, sr_png, flicker))
        for kind, (img, cmap) in extras.items():
            if img is None:
                continue
            tiles = [sample_tile(img, affine, data.shape, plane, k)[view.crop]
                     for k in view.indices]  # fmt: skip
            lo, hi = _window(tiles, masks, WINDOW if kind.endswith("Biascorr") else (1.0, 99.0))
            if kind.endswith("Std"):
                lo = 0.0
            label = next((t for k, t in titles.items() if kind.endswith(k)), "posterior std")
            written.append(
                render_mosaic(
                    tiles,
                    figure_path(out_dir, prefix, f"{plane}{kind}"),
                    cmap=cmap,
                    vmin=lo,
                    vmax=hi,
                    colorbar_label=label,
                    **opts,
                )
            )
    qc = {
        "Method": method,
        "ThroughPlaneWorldAxis": ("LR", "AP", "SI")[through],
        "Planes": list(through_planes(through)),
        "Output": metrics.image_quality(data, zooms, through, mask),
    }
    if lr_img is not None:
        lr_data, lr_affine = canonical(lr_img)
        qc["Input"] = metrics.input_quality(lr_data, np.sqrt((lr_affine[:3, :3] ** 2).sum(0)))
    qc_path = figure_path(out_dir, prefix, f"{method or 'sr'}QC", "json")
    written.append(write_json(qc_path, _finite(qc)))
    LOGGER.debug("%s: %d QC figures written to %s", prefix, len(written), out_dir)
    return written


def _in_memory(source: ImageLike | None) -> nib.Nifti1Image | None:
    """Load an image's data once (``sample_tile`` reads it per slice)."""
    if source is None or (not isinstance(source, nib.spatialimages.SpatialImage) and not source):
        return None
    img = source if isinstance(source, nib.spatialimages.SpatialImage) else nib.load(source)
    return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)


def _finite(obj):
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
